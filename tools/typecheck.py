"""Type-check dslrun with mypy, following the package mapping of setup.py.

    python tools/typecheck.py            # mypy over dslrun (its __init__) and .core, .dsl, .operators, .runtime
    python tools/typecheck.py -- ARGS    # extra mypy arguments (e.g. --no-incremental)

The folders core/ dsl/ operators/ runtime/ are imported as ``dslrun.core`` ... ``dslrun.runtime``
(setup.py) beside ``dslrun/``, which holds only the package's ``__init__.py``; the lenient
editable install resolves the names with an import hook that mypy cannot see. So this script
lays out ``build/typecheck/dslrun/`` as the package is installed: links to what ``dslrun/``
holds, and one link per mapped folder. It points MYPYPATH at it, runs ``mypy -p dslrun`` and
maps the paths mypy reports back to the repository's own (``core/keys.py``, not
``build/typecheck/dslrun/core/keys.py``). The links name folders (and dslrun/'s files): a module
added to a folder later is seen without reinstalling or re-running anything, on a fresh clone as
in a working copy. The tree's path is fixed, so mypy's incremental cache (.mypy_cache) stays
valid between runs. See ARCHITECTURE.md, "Types".
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("core", "dsl", "operators", "runtime")
TREE = ROOT / "build" / "typecheck"


def links() -> dict[str, Path]:
    """Name in build/typecheck/dslrun/ -> what it stands for in the repository."""
    own = {p.name: p for p in sorted((ROOT / "dslrun").iterdir())
           if p.name != "__pycache__" and p.name not in FOLDERS}
    return {**own, **{folder: ROOT / folder for folder in FOLDERS}}


def lay_out_tree() -> Path:
    """Create (or repair) build/typecheck/dslrun/ as links into the repository; return the tree."""
    package = TREE / "dslrun"
    package.mkdir(parents=True, exist_ok=True)
    wanted = links()
    for stale in package.iterdir():  # a file since removed from dslrun/
        if stale.name not in wanted and stale.is_symlink():
            stale.unlink()
    for name, source in wanted.items():
        link = package / name
        target = os.path.relpath(source, package)
        if link.is_symlink() and os.readlink(link) == target:
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target, target_is_directory=source.is_dir())
    return TREE


def repo_path(line: str, tree: Path) -> str:
    """Rewrite a reported ``build/typecheck/dslrun/core/x.py`` into ``core/x.py``."""
    for base in (tree / "dslrun", tree.relative_to(ROOT) / "dslrun"):
        for name, source in links().items():
            line = line.replace(f"{base / name}", source.relative_to(ROOT).as_posix())
    return line


def main(argv: list[str]) -> int:
    extra = argv[argv.index("--") + 1:] if "--" in argv else argv
    tree = lay_out_tree()
    env = dict(os.environ, MYPYPATH=str(tree))
    proc = subprocess.run([sys.executable, "-m", "mypy", "-p", "dslrun", *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    for stream, text in ((sys.stdout, proc.stdout), (sys.stderr, proc.stderr)):
        stream.write("".join(repo_path(line, tree) for line in text.splitlines(keepends=True)))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
