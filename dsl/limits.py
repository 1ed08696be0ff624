"""Bounds on what a spec may be, so a hostile one is rejected fast and with a span.

Specs are shared like code, and a parser is the first thing a stranger's spec reaches. Each
bound is far above what any recipe needs (the largest in specs/ is ~4 KB, 12 levels deep) and
far below what would cost a second or a gigabyte: every later stage (compile, emit, run) walks
value trees recursively, so bounding size and depth here bounds their work and stack too.
"""

from __future__ import annotations

import math
import re

from dslrun.core.errors import ErrorList, Span, SpecError

MAX_SPEC_BYTES = 1_000_000  # a whole spec file
MAX_DEPTH = 64  # nested lists, dicts, calls and operators, in either spelling
MAX_TOKENS = 20_000  # .sel tokens, counted before lark parses (~100 µs a token): specs/ has <= 207
MAX_NODES = 10_000  # values in a spec (YAML: composed before this stops it, ~100 µs a value)
MAX_ALIAS_NODES = 1_000  # values YAML aliases may copy in all ("billion laughs" stops here)
MAX_NUMBER_CHARS = 100  # digits of one number literal
MAX_STRING_CHARS = 200_000  # one string literal (an inline judge template fits easily)
INT_BOUND = 2**63  # integers are 64-bit: columns and expressions evaluate in numpy


def fail(span: Span, message: str, hint: str | None = None) -> ErrorList:
    return ErrorList([SpecError(span, message, hint)])


def check_size(size: int, file: str) -> None:
    """``size``: characters of a spec's text, or bytes of its file before it is read."""
    if size > MAX_SPEC_BYTES:
        raise fail(Span(file), f"spec is too large ({size:,} characters; at most {MAX_SPEC_BYTES:,})",
                   "a spec holds steps and settings; put data in a pool file")


# What the .sel lexer would call a token, near enough to count them (strings and comments whole).
_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|#[^\n]*|[$\w.]+|\S')


def check_tokens(text: str, file: str) -> None:
    n = 0
    for m in _TOKEN.finditer(text):
        if m.group()[0] == "#":
            continue
        n += 1
        if n > MAX_TOKENS:
            line = text.count("\n", 0, m.start()) + 1
            col = m.start() - text.rfind("\n", 0, m.start())
            raise fail(Span(file, line, col), f"spec has more than {MAX_TOKENS:,} tokens",
                       "a spec holds steps and settings; put data in a pool file")


def too_deep(span: Span) -> SpecError:
    return SpecError(span, f"nested more than {MAX_DEPTH} levels deep",
                     "flatten the value or split the expression (e.g. `x in [a, b]` instead of a chain of `or`)")


def too_many(span: Span) -> SpecError:
    return SpecError(span, f"spec has more than {MAX_NODES:,} values", "a spec holds steps; put data in a pool file")


def number_problem(text: str, value: object | None = None) -> str | None:
    """Why a number literal is not allowed (None when it is). ``value``: already converted."""
    if len(text) > MAX_NUMBER_CHARS:
        return f"number literal too long ({len(text):,} characters; at most {MAX_NUMBER_CHARS})"
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int) and not -INT_BOUND <= value < INT_BOUND:
        return "integer out of range (integers are 64-bit)"
    if isinstance(value, float) and not math.isfinite(value):
        return f"number out of range ({value})"
    return None


def string_problem(text: str) -> str | None:
    if len(text) > MAX_STRING_CHARS:
        return f"string literal too long ({len(text):,} characters; at most {MAX_STRING_CHARS:,})"
    return None
