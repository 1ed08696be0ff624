"""Type-check dslrun with mypy, following the package mapping of setup.py.

    python tools/typecheck.py            # mypy over dslrun.core, .dsl, .operators, .runtime
    python tools/typecheck.py -- ARGS    # extra mypy arguments (e.g. --no-incremental)

The folders core/ dsl/ operators/ runtime/ are imported as ``dslrun.core`` ... ``dslrun.runtime``
(setup.py), but no ``dslrun/`` folder exists, and the lenient editable install resolves the
names with an import hook that mypy cannot see. So this script lays out ``build/typecheck/dslrun/``
as four symlinks to those folders, points MYPYPATH at it, and maps the paths mypy reports back to
the repository's own (``core/keys.py``, not ``build/typecheck/dslrun/core/keys.py``). The links
point at folders, not files: a module added later is seen without reinstalling or re-running
anything, on a fresh clone as in a working copy. The tree's path is fixed, so mypy's incremental
cache (.mypy_cache) stays valid between runs. See ARCHITECTURE.md, "Types".
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("core", "dsl", "operators", "runtime")
TREE = ROOT / "build" / "typecheck"


def lay_out_tree() -> Path:
    """Create (or repair) build/typecheck/dslrun/<folder> -> <repo>/<folder>; return the tree."""
    package = TREE / "dslrun"
    package.mkdir(parents=True, exist_ok=True)
    for folder in FOLDERS:
        link = package / folder
        target = os.path.relpath(ROOT / folder, package)
        if link.is_symlink() and os.readlink(link) == target:
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    return TREE


def repo_path(line: str, tree: Path) -> str:
    """Rewrite a reported ``build/typecheck/dslrun/core/x.py`` into ``core/x.py``."""
    for prefix in (f"{tree / 'dslrun'}{os.sep}", f"{tree.relative_to(ROOT) / 'dslrun'}{os.sep}"):
        line = line.replace(prefix, "")
    return line


def main(argv: list[str]) -> int:
    extra = argv[argv.index("--") + 1:] if "--" in argv else argv
    tree = lay_out_tree()
    env = dict(os.environ, MYPYPATH=str(tree))
    packages = [arg for folder in FOLDERS for arg in ("-p", f"dslrun.{folder}")]
    proc = subprocess.run([sys.executable, "-m", "mypy", *packages, *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    for stream, text in ((sys.stdout, proc.stdout), (sys.stderr, proc.stderr)):
        stream.write("".join(repo_path(line, tree) for line in text.splitlines(keepends=True)))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
