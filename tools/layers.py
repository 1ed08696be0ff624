"""Check the import layers (pyproject.toml [tool.importlinter]) on a copy laid out as installed.

setup.py maps the folders core/, dsl/, operators/, runtime/ (and dslrun/, the package's own
__init__) onto one package, ``dslrun``; import-linter reads a package from one folder on disk.
So this copies the mapped folders' Python files into a temporary ``dslrun/`` tree (a copy,
not links: the walk does not follow links) and runs ``lint-imports`` there.

    python tools/layers.py        # exit status and output of lint-imports
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"core": "core", "dsl": "dsl", "operators": "operators", "runtime": "runtime"}


def main() -> int:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        print("lint-imports not found: pip install -e '.[dev]'", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "dslrun"
        shutil.copytree(REPO / "dslrun", root, ignore=shutil.ignore_patterns("__pycache__"))
        for name, folder in FOLDERS.items():
            shutil.copytree(REPO / folder, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copy(REPO / "pyproject.toml", tmp)
        env = {**os.environ, "PYTHONPATH": tmp + os.pathsep + os.environ.get("PYTHONPATH", "")}
        return subprocess.run([exe], cwd=tmp, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
