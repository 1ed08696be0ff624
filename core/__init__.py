"""dslrun.core — see README.md in this folder."""

if __name__ != "dslrun.core":  # pragma: no cover - guard, exercised in tests/test_packaging.py
    raise ImportError(
        f"this folder is the package dslrun.core; it was imported as {__name__!r}, which would load "
        "a second copy of its modules. Install the project (pip install -e .) and import dslrun.core."
    )
