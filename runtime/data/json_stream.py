"""The records of a JSON array file, one at a time, without reading the file whole.

Alpaca-style pools are usually one big JSON array (``alpaca_data.json``); ``json.loads``
of a 1 GB file holds the text and every record at once, several times the file's size.
This reads a megabyte at a time and decodes one array element at a time with the
standard library's decoder (``raw_decode``), so memory holds one buffer and one record.
A clean Alpaca array of flat objects is read through Arrow instead (arrow_json_array.py);
this is the path for every other array, and the definition that one must match.

An element is accepted only when something that cannot continue a number follows it in
the buffer: a number cut at the buffer's end ("12" of "1234", "1" of "1.5") would otherwise
decode as a shorter number. Strings, objects and arrays cannot be cut that way; a cut one
fails to decode and more is read.

An element nested deeper than the decoder's stack (``RecursionError``) is skipped by counting
brackets outside strings, and a ``TooDeep`` stands in its place: one hostile record is
quarantined, the rest of the file is read.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHUNK = 1 << 20  # characters read at a time
MAX_ELEMENT = 1 << 30  # characters one element may span before we call the file malformed
WHITESPACE = " \t\n\r"
NUMBER_CHARS = "0123456789.eE+-"  # after a decoded value: maybe a number cut at the buffer's end


class JsonStreamError(ValueError):
    """Malformed JSON, at a 1-based line and column of the file."""

    def __init__(self, msg: str, lineno: int, colno: int):
        super().__init__(f"{msg}: line {lineno} column {colno}")
        self.msg, self.lineno, self.colno = msg, lineno, colno


class TooDeep:
    """In place of an element too deeply nested to decode; ``text``: its first characters."""

    def __init__(self, text: str):
        self.text = text


class NotAnArray(Exception):
    """The file's top-level value is not an array (the caller decides what to do)."""


class _Buffer:
    """Decoded text of the file from some point on, and where that point is (line, column)."""

    def __init__(self, path: Path):
        self.file = path.open("rb")
        # surrogateescape keeps undecodable bytes visible as lone surrogates, so one bad
        # record is quarantined instead of the whole file failing.
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self.text, self.pos, self.eof = "", 0, False
        self.line, self.col = 1, 1  # of text[0]
        self._first = True

    def more(self) -> bool:
        """Read more text (at least as much again as is buffered); False at the end of the file."""
        if self.eof:
            return False
        raw = self.file.read(max(CHUNK, len(self.text) - self.pos))
        self.eof = not raw
        new = self.decoder.decode(raw, final=self.eof)
        if self._first and new:
            new, self._first = new.removeprefix("\ufeff"), False
        self.text += new
        return True

    def drop_consumed(self) -> None:
        if self.pos < CHUNK:
            return
        gone = self.text[:self.pos]
        newlines = gone.count("\n")
        if newlines:
            self.line += newlines
            self.col = len(gone) - gone.rfind("\n")
        else:
            self.col += len(gone)
        self.text, self.pos = self.text[self.pos:], 0

    def skip_space(self) -> str:
        """The next non-whitespace character ('' at the end of the file), not consumed."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in WHITESPACE:
                self.pos += 1
            if self.pos < len(self.text) or not self.more():
                return self.text[self.pos:self.pos + 1]

    def error(self, msg: str, at: int) -> JsonStreamError:
        before = self.text[:at]
        newlines = before.count("\n")
        if newlines:
            return JsonStreamError(msg, self.line + newlines, at - before.rfind("\n"))
        return JsonStreamError(msg, self.line, self.col + at)

    def close(self) -> None:
        self.file.close()


def iter_json_array(path: str | Path) -> Iterator[Any]:
    """Each element of the file's top-level array. Raises ``NotAnArray`` before yielding
    anything when the top level is something else, and ``JsonStreamError`` where the file
    stops being valid JSON (after yielding the elements before that point)."""
    buf = _Buffer(Path(path))
    decoder = json.JSONDecoder()
    try:
        first = buf.skip_space()
        if first != "[":
            if first == "":
                raise buf.error("Expecting value", buf.pos)
            raise NotAnArray(first)
        buf.pos += 1
        if buf.skip_space() == "]":
            buf.pos += 1
        else:
            while True:
                yield _element(buf, decoder)
                c = buf.skip_space()
                if c == "]":
                    buf.pos += 1
                    break
                if c != ",":
                    raise buf.error("Expecting ',' delimiter", buf.pos)
                buf.pos += 1
                buf.skip_space()
                buf.drop_consumed()
        if buf.skip_space() != "":
            raise buf.error("Extra data", buf.pos)
    finally:
        buf.close()


def _element(buf: _Buffer, decoder: json.JSONDecoder) -> Any:
    while True:
        try:
            value, end = decoder.raw_decode(buf.text, buf.pos)
            if buf.eof or end < len(buf.text) and buf.text[end] not in NUMBER_CHARS:
                buf.pos = end
                return value
            failure = None
        except json.JSONDecodeError as e:
            failure = e
        except RecursionError:
            return _skip_deep(buf)
        if len(buf.text) - buf.pos > MAX_ELEMENT:
            raise buf.error(f"an element longer than {MAX_ELEMENT} characters (malformed?)", buf.pos)
        if not buf.more():
            assert failure is not None  # at the end of the file a complete value decodes
            raise buf.error(failure.msg, failure.pos)


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|["\[\]{}]')  # a whole string, a lone quote, a bracket


def _skip_deep(buf: _Buffer) -> TooDeep:
    """Past the array or object at ``buf.pos`` without decoding it (reading more as needed)."""
    start = buf.pos
    while True:
        end = _container_end(buf.text, start)
        if end is not None:
            buf.pos = end
            return TooDeep(buf.text[start:start + 200])
        if len(buf.text) - start > MAX_ELEMENT:
            raise buf.error(f"an element longer than {MAX_ELEMENT} characters (malformed?)", start)
        if not buf.more():
            raise buf.error("Unterminated array or object", start)


def _container_end(text: str, start: int) -> int | None:
    """Where the container opened at ``start`` closes; None when the text ends first."""
    depth = 0
    for m in _TOKEN.finditer(text, start):
        token = m.group()
        if token == '"':  # a string cut at the end of the buffer
            return None
        if token in "[{":
            depth += 1
        elif token in "]}":
            depth -= 1
            if depth == 0:
                return m.end()
    return None
