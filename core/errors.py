"""The one error type users see: ``SpecError(span, message, hint)``.

Every front-end and compiler pass collects its errors into an ``ErrorList``
and raises once, so a user fixes a spec in one round instead of one error at
a time. Rendering shows ``file:line:col: message``, the source line, a caret
under the offending column and an optional hint.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

MAX_ERRORS = 50  # beyond this the rest are counted, not shown: later errors are usually echoes


@dataclass(frozen=True)
class Span:
    """A position in a spec file: 1-based line and column."""

    file: str
    line: int = 0
    col: int = 0
    end_line: int = 0
    end_col: int = 0

    def __str__(self) -> str:
        if not self.line:
            return self.file
        return f"{self.file}:{self.line}:{self.col}"


CLI = Span("<command line>")


@dataclass
class SpecError(Exception):
    span: Span
    message: str
    hint: str | None = None
    source: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        out = [f"{self.span}: error: {self.message}"]
        line = _source_line(self.span, self.source)
        if line is not None:
            width = 1
            if self.span.end_line == self.span.line and self.span.end_col > self.span.col:
                width = self.span.end_col - self.span.col
            line, col = _window(line, max(self.span.col, 1))
            out.append(f"    {line}")
            out.append("    " + " " * (col - 1) + "^" * max(1, min(width, len(line) - col + 1)))
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)


class ErrorList(Exception):
    """Several SpecErrors raised together; ``str()`` renders them all."""

    def __init__(self, errors: Iterable[SpecError]):
        self.errors = list(errors)
        super().__init__(self.render())

    def render(self) -> str:
        shown = sorted(self.errors[:MAX_ERRORS], key=lambda e: (e.span.file, e.span.line, e.span.col))
        parts = [e.render() for e in shown]
        if len(self.errors) > MAX_ERRORS:
            parts.append(f"... and {len(self.errors) - MAX_ERRORS} more errors")
        n = len(self.errors)
        parts.append(f"{n} error{'s' if n != 1 else ''} in spec")
        return "\n".join(parts)


class Collector:
    """Accumulates errors during a pass; ``raise_if_any`` raises them once."""

    def __init__(self) -> None:
        self.errors: list[SpecError] = []

    def add(self, span: Span, message: str, hint: str | None = None) -> None:
        self.errors.append(SpecError(span, message, hint))

    def extend(self, errors: Iterable[SpecError]) -> None:
        self.errors.extend(errors)

    def raise_if_any(self) -> None:
        if self.errors:
            raise ErrorList(self.errors)


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice a typo most likely meant, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    choices = list(choices)
    best = closest(name, choices)
    if best:
        return f"did you mean `{best}`?"
    if choices and len(choices) <= 12:
        return "expected one of: " + ", ".join(f"`{c}`" for c in sorted(choices))
    return None


_SOURCES: dict[str, list[str]] = {}


def register_source(file: str, text: str) -> None:
    """Remember a spec's text so errors can quote its lines without re-reading it."""
    _SOURCES[file] = text.splitlines()


def _window(line: str, col: int, width: int = 100) -> tuple[str, int]:
    """A long line (a minified or hostile spec) cut to ``width`` characters around ``col``."""
    line = line.replace("\x00", "\N{SYMBOL FOR NULL}")  # a NUL would end the message in some terminals
    if len(line) <= width:
        return line, col
    start = max(0, min(col - 1 - width // 4, len(line) - width))
    cut = line[start:start + width]
    if start:
        cut, col = "…" + cut[1:], col - start
    if start + width < len(line):
        cut = cut[:-1] + "…"
    return cut, col


def _source_line(span: Span, source: str | None) -> str | None:
    if not span.line:
        return None
    lines = source.splitlines() if source is not None else _SOURCES.get(span.file)
    if lines is None:
        try:
            lines = Path(span.file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return None
    if 0 < span.line <= len(lines):
        return lines[span.line - 1]
    return None
