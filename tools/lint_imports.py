"""Check the import layers (pyproject.toml [tool.importlinter]) with ``lint-imports``.

import-linter takes its root package from the file system: ``dslrun``'s folder must hold
its subpackages, as it does in the wheel. In this repository they are siblings
(``dslrun/`` holds only the Python API's ``__init__.py``; ``core/``, ``dsl/``,
``operators/``, ``runtime/`` are mapped onto ``dslrun.*`` by setup.py), so this runs the
linter on a link farm of that layout in a temporary folder: the same files, the wheel's
shape, whichever editable mode installed the project.

    python tools/lint_imports.py        # what `make check` and tests/test_layers.py run
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("core", "dsl", "operators", "runtime")


def lint_imports() -> str | None:
    return shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")


def main(argv: list[str]) -> int:
    exe = lint_imports()
    if exe is None:
        print("lint-imports not found: pip install -e '.[dev]'", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="dslrun-layers-") as tmp:
        pkg = Path(tmp) / "dslrun"
        pkg.mkdir()
        os.symlink(REPO / "dslrun" / "__init__.py", pkg / "__init__.py")
        for name in SUBPACKAGES:
            os.symlink(REPO / name, pkg / name, target_is_directory=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([tmp, *filter(None, [os.environ.get("PYTHONPATH")])])}
        cmd = [exe, "--config", str(REPO / "pyproject.toml"), "--no-cache", *argv]
        return subprocess.run(cmd, cwd=tmp, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
