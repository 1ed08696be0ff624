"""What a spec may touch: the trust boundary for recipes written by someone else.

A spec is shared like code but run like data, so it gets less than the user who runs it:

* files it reads (``InputPath`` fields: pools, templates, targets, anchors, eval sets) must
  lie, after resolving symlinks, under the spec's folder, the current folder, or a folder the
  user names (``--allow-path DIR``, or ``allow_paths`` in dslrun.yaml);
* files it writes (``OutputPath`` fields, e.g. ``save(path: ...)``) are relative to ``--out``
  and may not leave it (no absolute paths, no ``..``);
* code it names (fields marked ``names_code``, e.g. ``evaluate(benchmarks: ["mod:fn"])``) is
  imported only with ``--allow-code``.

Values the user typed on the command line (``--set``) are the user's own and not limited.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath


@dataclass(frozen=True)
class Trust:
    allow_paths: tuple[Path, ...] = ()
    allow_code: bool = False


def input_problem(path: Path, roots: list[Path]) -> tuple[str, str] | None:
    """(message, hint) when the resolved ``path`` lies outside every root."""
    for root in roots:
        try:
            if path.is_relative_to(root.resolve()):
                return None
        except OSError:
            continue
    folder = path.parent
    return (f"reads {path}, outside the spec's folder and the current one",
            f"a spec may read only files below those; to allow this one, pass --allow-path {folder} "
            "(or list it under allow_paths in dslrun.yaml)")


def output_problem(text: str) -> tuple[str, str] | None:
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute() or text.startswith("~"):
        return (f"writes to {text}, an absolute path",
                "outputs are relative to --out; write e.g. `path: \"selected.json\"` and choose --out")
    if os.path.normpath(text).replace("\\", "/").split("/")[0] == "..":
        return (f"writes to {text}, outside --out", "outputs are relative to --out and stay below it")
    return None


def code_problem(key: str) -> tuple[str, str]:
    return (f"`{key}` names Python code to import and run",
            "a spec runs code only when you allow it: pass --allow-code if you trust this spec")
