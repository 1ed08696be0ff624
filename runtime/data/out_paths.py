"""Every file a run writes below ``--out`` stays below it, whatever symlinks the folder holds.

The compiler keeps a spec's output paths relative and free of ``..`` (``dsl/trust.py``); the
folder itself may still hold symlinks (a cloned repository, a shared or reused folder). While
a run writes, its ``--out`` is *guarded* (``guard``), and every write under it goes through
``make_dirs`` (through ``atomic_write`` for files):

* a folder between ``--out`` and the file that is a symlink leading outside ``--out``
  (``out/sub -> /``) is refused with ``UnsafeOutput`` naming it: following it would write
  outside, and replacing it would delete a folder link the user may have made on purpose;
* a file that is a symlink (``out/selected.json -> /elsewhere``) is replaced by the new file:
  the final rename replaces the link itself, never its target, as writing a fresh output
  should; the temporary file beside it is created anew (``O_EXCL | O_NOFOLLOW``), so a link
  planted at its name is not followed either.

``--out`` itself may be a symlink (the user chose it); links inside it that stay inside are fine.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_ROOTS: dict[Path, tuple[Path, int]] = {}  # --out as given (absolute) → (resolved, runs using it)
_LOCK = threading.Lock()


class UnsafeOutput(OSError):
    """A write under ``--out`` that would land outside it; nothing was written."""

    def __init__(self, path: Path, why: str):
        super().__init__(errno.ELOOP, why, str(path))


@contextmanager
def guard(out: Path) -> Iterator[None]:
    """While inside, writes below ``out`` are held to it (``make_dirs``)."""
    key = Path(os.path.abspath(out))
    with _LOCK:
        real, n = _ROOTS.get(key, (key.resolve(), 0))
        _ROOTS[key] = (real, n + 1)
    try:
        yield
    finally:
        with _LOCK:
            real, n = _ROOTS[key]
            if n > 1:
                _ROOTS[key] = (real, n - 1)
            else:
                del _ROOTS[key]


def _root_of(path: Path) -> tuple[Path, Path] | None:
    with _LOCK:
        roots = [(k, real) for k, (real, _) in _ROOTS.items()]
    return max(((k, real) for k, real in roots if path.is_relative_to(k)), key=lambda r: len(r[0].parts),
               default=None)


def make_dirs(folder: Path) -> None:
    """``folder.mkdir(parents=True, exist_ok=True)``, but below a guarded ``--out`` a folder on
    the way that is a symlink leading outside it raises ``UnsafeOutput``."""
    folder = Path(os.path.abspath(folder))
    root = _root_of(folder)
    if root is None:
        folder.mkdir(parents=True, exist_ok=True)
        return
    top, real = root
    here = top
    for part in folder.relative_to(top).parts:
        here = here / part
        if here.is_symlink() and not here.resolve().is_relative_to(real):
            raise UnsafeOutput(here, f"a symbolic link to {os.readlink(here)}, outside the output folder "
                                     f"{top}; remove the link or choose another --out")
        here.mkdir(exist_ok=True)


def fresh_file(path: Path) -> None:
    """An empty regular file at ``path``, whatever was there (a link there is removed, not followed)."""
    if path.is_symlink() or path.exists():
        path.unlink()
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666))
