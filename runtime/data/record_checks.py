"""What makes one pool record unusable whatever its layout: nesting too deep, text that is not
UTF-8. Both are checked without recursion, so a hostile record cannot raise ``RecursionError``
here or later: every record that passes is at most ``MAX_RECORD_DEPTH`` levels deep, well
within the stack of every later walk (canonical JSON for ids, Arrow conversion, quarantine).

A training sample needs a few levels (a record, its ``messages``, a turn, maybe a tool call's
arguments); 100 is also the deepest schema Arrow's Parquet reader accepts.
"""

from __future__ import annotations

import reprlib
from typing import Any

MAX_RECORD_DEPTH = 100
TOO_DEEP = f"nested deeper than {MAX_RECORD_DEPTH} levels"
BAD_TEXT = "bad UTF-8 (undecodable bytes or lone surrogates in text)"
SNIPPET_CHARS = 200  # of a record too deep to keep whole in the quarantine file


def record_problem(rec: Any) -> str | None:
    """``TOO_DEEP``, ``BAD_TEXT`` or None; one pass over the record, depth first."""
    stack: list[tuple[Any, int]] = [(rec, 1)]
    bad_text = False
    while stack:
        x, depth = stack.pop()
        if isinstance(x, str):
            bad_text = bad_text or not _is_utf8(x)
        elif isinstance(x, (dict, list, tuple)):
            if depth > MAX_RECORD_DEPTH:
                return TOO_DEEP
            items = [*x.keys(), *x.values()] if isinstance(x, dict) else x
            stack.extend((v, depth + 1) for v in items)
    return BAD_TEXT if bad_text else None


def _is_utf8(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(s: str) -> str:
    """``s`` with undecodable bytes (kept as lone surrogates when read) shown as ``\\xff`` and
    other lone surrogates as ``\\ud800``: text a UTF-8 file can hold, saying what was there."""
    if _is_utf8(s):
        return s
    try:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


def for_quarantine(rec: Any, problem: str | None) -> Any:
    """The record as the quarantine file keeps it: a record too deep becomes a short text (its
    JSON would be as deep), bad text becomes printable."""
    if problem == TOO_DEEP:
        return snippet(rec if isinstance(rec, str) else _short_repr(rec))
    return _printable_tree(rec)


def snippet(text: str) -> str:
    text = printable(text)
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + "…"


def _short_repr(rec: Any) -> str:
    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother = 6, 60, 60  # reprlib stops at maxlevel: no deep recursion
    return r.repr(rec)


def _printable_tree(x: Any) -> Any:
    # Only records within MAX_RECORD_DEPTH get here: parse_record reports depth before anything
    # else, and sources give text for the records they could not decode.
    if isinstance(x, str):
        return printable(x)
    if isinstance(x, dict):
        return {printable(str(k)): _printable_tree(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_printable_tree(v) for v in x]
    return x
