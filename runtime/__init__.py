"""dslrun.runtime — see README.md in this folder."""

if __name__ != "dslrun.runtime":  # pragma: no cover - guard, exercised in tests/test_packaging.py
    raise ImportError(
        f"this folder is the package dslrun.runtime; it was imported as {__name__!r}, which would load "
        "a second copy of its modules. Install the project (pip install -e .) and import dslrun.runtime."
    )
