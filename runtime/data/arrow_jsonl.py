"""Reading a clean Alpaca JSONL pool with Arrow's JSON reader instead of record by record.

Most pools are clean: every line one object with string ``instruction``/``input``/``output``.
For those, Arrow parses each chunk of lines in C++ (multi-threaded), the text stays in Arrow
arrays (arrow_columns.py), each record stays in the file until ``save`` wants it
(``SourceLines``), and ``messages`` is derived on demand (derived_column.py). Only the sample
ids are computed in Python, one hash per row.

The fast path gives the table the per-record path (pool_files.py) gives, or nothing: at the
first sign that some line would be treated differently there — a line to quarantine, a blank
or whitespace-led line, a control character or carriage return, a field Arrow would type other
than as ``json.loads`` does (dates, nested values, a string here and a number there) — it
stops and ``read_pool`` reads the file record by record. So quarantine, row numbers and every
value keep one definition.

A clean JSON array is read by the same machinery (arrow_json_array.py finds its elements).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from dslrun.runtime.data.appender import Appender
from dslrun.runtime.data.arrow_columns import ArrowStore
from dslrun.runtime.data.arrow_ids import alpaca_ids
from dslrun.runtime.data.arrow_text import ONLY_SPACE
from dslrun.runtime.data.derived_column import DerivedColumn, alpaca_messages
from dslrun.runtime.data.disk_columns import DiskColumn, SourceLines
from dslrun.runtime.data.id_column import HexIds
from dslrun.runtime.data.table import Table, as_column

LONG_DIGITS = re.compile(rb"[0-9]{19}")
CHUNK_BYTES = 32 << 20  # of the file parsed at a time (cut at a line break)
BASE = ("id", "instruction", "input", "output", "messages", "n_turns")
PARTS = ("instruction", "input", "output")


class NotClean(Exception):
    """Some line needs the per-record path; the reason is for tests and debugging."""


def read_clean_jsonl(path: Path, limit: int, fields: dict[str, str], spill_rows: int | None,
                     spill_root: str | Path | None) -> tuple[Table, list[Any]] | None:
    """The pool's table and its quarantined rows (``pool_files.Quarantined``), or None when some
    line needs the per-record path (nothing is kept)."""
    return read_clean(_Reader, path, limit, fields, spill_rows, spill_root)


def read_clean(kind: type[_Reader], path: Path, limit: int, fields: dict[str, str], spill_rows: int | None,
               spill_root: str | Path | None) -> tuple[Table, list[Any]] | None:
    """``read_clean_jsonl`` with another reader (arrow_json_array.py: a JSON array's elements)."""
    try:
        reader = kind(path, limit, fields, spill_rows, spill_root)
        return reader.read(), reader.quarantined
    except NotClean:
        return None


class _Reader:
    """Reads a JSONL pool a chunk of lines at a time; a subclass finds the rows of another layout
    (``_block``) and hands them to ``_rows``, which does the rest."""

    FORMAT = "jsonl"  # the table's meta["format"]: what ``save`` writes by default
    NEWLINES_IN_VALUES = False  # Arrow's option: may one row's object span several lines
    LONG_INTEGERS_UNCHECKED = True  # _block does not look for integers past int64 (``_check_floats`` does)

    def __init__(self, path: Path, limit: int, fields: dict[str, str], spill_rows: int | None,
                 spill_root: str | Path | None):
        self.path, self.limit, self.fields = path, limit, fields
        self.spill_rows, self.spill_root = spill_rows, spill_root
        self.names = {k: fields.get(k, k) for k in PARTS}
        self.text = ArrowStore(spill=False, root=spill_root)
        self.ids = Appender(">u8")  # digests (id_column.py)
        self.starts = Appender(np.int64)  # each row's line in the file: its first byte,
        self.ends = Appender(np.int64)  # and the byte after its line break
        self.lines = Appender(np.int64)  # each row's line number (0-based), as the per-record path counts
        self.seen = 0  # lines of the chunks read so far
        self.quarantined: list[Any] = []
        self.extra: dict[str, str] = {}  # record field -> column name, in order of first appearance
        self.numbers: dict[str, list[Any]] = {}  # non-text extra fields: Python values so far
        self.texts: set[str] = set()  # extra fields held as Arrow text
        self.dates: set[str] = set()  # extra fields Arrow would read as dates: read as text
        self.rows = 0

    def read(self) -> Table:
        self._check_first_record()
        with self.path.open("rb") as f:
            base, rest, done = 0, b"", False
            while not done:
                raw = f.read(CHUNK_BYTES)
                data = rest + raw
                cut, done = self._block(data, base, not raw)
                base, rest = base + cut, data[cut:]
        self.text.finish()
        n = self.rows
        starts, ends = self.starts.array(), self.ends.array()
        cols: dict[str, Any] = {"id": HexIds(self.ids.array()) if n else as_column([], "str")}
        for k in PARTS:
            cols[k] = self.text.column(k) if n else as_column([], "str")
        cols["messages"] = (DerivedColumn(alpaca_messages, [cols[k] for k in PARTS]) if n
                            else as_column([], "list"))
        cols["n_turns"] = np.broadcast_to(np.int64(1), n)  # one turn each: 8 bytes, not 8 a row (read-only)
        for k, name in self.extra.items():
            if k in self.texts:
                cols[name] = self.text.column(name)
            else:
                cols[name] = as_column(self.numbers[k])
        cols["_row"] = self.lines.array()
        cols["_record"] = DiskColumn.of(SourceLines(self.path, starts, ends), "_record") if n else as_column([], "any")
        return Table(cols, {"source": str(self.path), "schema": "alpaca", "format": self.FORMAT,
                            "fields": dict(self.fields)})

    def _check_first_record(self) -> None:
        with self.path.open("rb") as f:
            self._check_first(f.readline())

    def _check_first(self, first: bytes) -> None:
        """The per-record path takes the pool's schema from its first record: Alpaca, or fall back."""
        from dslrun.runtime.data.pool_files import detect_schema

        try:
            rec = json.loads(first)
        except (ValueError, RecursionError):
            raise NotClean("the first record is not a JSON object") from None
        if not isinstance(rec, dict) or detect_schema(rec, self.fields) != "alpaca":
            raise NotClean("not an Alpaca pool")

    def _block(self, data: bytes, base: int, last: bool) -> tuple[int, bool]:
        """Read the rows at the start of ``data`` (the file from byte ``base`` on; ``last``: to
        its end): how many bytes they took, and True when no more need reading."""
        cut = len(data) if last else data.rfind(b"\n") + 1  # the last line may have no line break
        done = bool(cut) and self._chunk(memoryview(data)[:cut], base)
        return cut, done or last

    def _chunk(self, data: memoryview, base: int) -> bool:
        """Parse one chunk of whole lines; True when ``limit`` rows have been read."""

        a = np.frombuffer(data, dtype=np.uint8)
        breaks = np.flatnonzero(a == 10)
        if np.count_nonzero(a < 32) != len(breaks):
            raise NotClean("a control character or carriage return")
        starts = np.concatenate([[0], breaks + 1])
        if starts[-1] == len(a):
            starts = starts[:-1]  # the chunk ends with a line break
        if not len(starts) or np.any(a[starts] != ord("{")):
            raise NotClean("a blank line, or one that does not start with '{'")
        ends = np.append(starts[1:], len(a))
        return self._rows(data, starts, ends, base + starts, base + ends)

    def _rows(self, data: Any, starts: np.ndarray, ends: np.ndarray, first: np.ndarray, last: np.ndarray) -> bool:
        """Read the rows of one chunk: row i is ``data[starts[i]:ends[i]]`` (one object, maybe
        with whitespace around it; the rows cover ``data``) and the file's bytes
        ``first[i]:last[i]`` (what ``_record`` reads back). True when ``limit`` rows have been read."""
        table, order = self._parse(data)
        if table.num_rows != len(starts):
            raise NotClean("a row with more or less than one object")
        if self.LONG_INTEGERS_UNCHECKED:
            _check_floats(table, data)
        keep = self._quarantine(table, data, starts, ends)
        lines = self.seen + keep
        self.seen += len(starts)
        if len(keep) < len(starts):  # rows were quarantined: Arrow reads the others again
            kept = b"".join(bytes(data[s:e]) for s, e in zip(starts[keep].tolist(), ends[keep].tolist()))
            table, order = self._parse(memoryview(kept)) if kept else (table.slice(0, 0), [])
            if table.num_rows != len(keep):
                raise NotClean("a line Arrow reads differently alone")
            first, last = first[keep], last[keep]
        take = len(keep)
        if not take:
            return bool(self.limit) and self.rows >= self.limit
        text = self._parts(table)
        self._extras(table, order, text)
        self.text.append(text)
        if not self.text.spill and self.spill_rows is not None and self.rows + take > self.spill_rows:
            self.text.spill_now()
        self.ids.add(alpaca_ids(*(text[k] for k in PARTS)))
        self.starts.add(first)
        self.ends.add(last)
        self.lines.add(lines)
        self.rows += take
        return bool(self.limit) and self.rows >= self.limit

    def _quarantine(self, table: Any, data: memoryview, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """The lines (indices in the chunk) to keep, up to ``limit`` kept rows; the rows that
        ``parse_record`` rejects among those Arrow flags (a null or blank field) are quarantined
        with its reason, as the per-record path would (and only those before the limit)."""
        import pyarrow.compute as pc

        from dslrun.runtime.data.pool_files import Quarantined, parse_record
        from dslrun.runtime.data.record_checks import for_quarantine

        flagged = np.zeros(len(starts), dtype=bool)
        for k in PARTS:
            col = table.column(self.names[k]).combine_chunks()
            _valid_text(col)
            flagged |= _mask(pc.is_null(col))
            if k != "input":
                flagged |= _mask(pc.fill_null(pc.match_substring_regex(col, ONLY_SPACE), False))
        bad: list[tuple[int, str, Any]] = []
        for i in np.flatnonzero(flagged).tolist():
            try:
                rec = json.loads(bytes(data[starts[i]:ends[i]]).decode("utf-8"))  # strict, as the per-record path
            except (ValueError, RecursionError):  # (json.loads of bytes lets UTF-8 surrogates through)
                raise NotClean("a line json.loads reads differently") from None
            _, problem = parse_record(rec, "alpaca", self.fields)
            if problem is not None:
                bad.append((i, problem, rec))
            elif not _only_input_missing(table, self.names, i):
                raise NotClean("Arrow and the per-record path disagree about a row")
        keep_mask = np.ones(len(starts), dtype=bool)
        keep_mask[[i for i, _, _ in bad]] = False
        keep = np.flatnonzero(keep_mask)
        if self.limit and len(keep) >= self.limit - self.rows:
            keep = keep[:max(self.limit - self.rows, 0)]
            last = keep[-1] if len(keep) else -1  # the per-record path stops reading after it
            bad = [b for b in bad if b[0] < last]
        self.quarantined += [Quarantined(self.seen + i, why, for_quarantine(rec, why)) for i, why, rec in bad]
        return keep

    def _parse(self, data: memoryview) -> Any:
        """The chunk as an Arrow table; the Alpaca fields and every text field seen so far are
        read as text, so a value that looks like a date stays the string json.loads gives."""
        import pyarrow as pa
        import pyarrow.json as pj

        order: list[str] | None = None
        while True:
            text = [self.names[k] for k in PARTS] + sorted(self.texts | self.dates)
            opts = pj.ParseOptions(explicit_schema=pa.schema([(k, pa.string()) for k in text]),
                                   unexpected_field_behavior="infer", newlines_in_values=self.NEWLINES_IN_VALUES)
            try:
                table = pj.read_json(pa.BufferReader(data), parse_options=opts)
                names = table.column_names  # a field name of bad UTF-8 fails here
            except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as e:
                raise NotClean(f"Arrow cannot read a line: {e}") from None
            order = order or names  # new fields in order of first appearance
            dates = {f.name for f in table.schema if pa.types.is_temporal(f.type)} - self.dates
            if not dates:
                return table, order
            self.dates |= dates  # inferred from strings: read them again as text

    def _parts(self, table: Any) -> dict[str, Any]:
        """The Alpaca text of the kept rows (a null input is an absent one: ``_quarantine`` checked)."""
        import pyarrow.compute as pc

        out = {}
        for k in PARTS:
            col = table.column(self.names[k]).combine_chunks()
            if col.null_count:
                if k != "input":
                    raise NotClean(f"a null `{self.names[k]}` in a kept row")
                col = pc.fill_null(col, "")
            out[k] = col  # its UTF-8 was checked in _quarantine (a re-read holds the same bytes)
        return out

    def _extras(self, table: Any, order: list[str], text: dict[str, Any]) -> None:
        import pyarrow as pa

        skip = set(self.names.values())
        for k in order:
            if k in skip:
                continue
            col = table.column(k).combine_chunks()
            kind = _kind(col.type)
            if k not in self.extra:
                self.extra[k] = "field_" + k if k in BASE or k.startswith("_") else k
                if kind == "text":
                    self.texts.add(k)
                    if self.rows:  # null in the rows before, batch for batch
                        self.text.extend(self.extra[k], pa.nulls(self.rows, pa.string()))
                else:
                    self.numbers[k] = [None] * self.rows
            if k in self.texts:
                if kind == "null":
                    col = pa.nulls(len(col), pa.string())
                elif kind != "text":
                    raise NotClean(f"field `{k}` is text in some lines and not in others")
                _valid_text(col)
                text[self.extra[k]] = col
            else:
                if kind == "text":
                    raise NotClean(f"field `{k}` is text in some lines and not in others")
                self.numbers[k].extend(col.to_pylist())
        for k in self.extra:  # a field this chunk lacks: null in its rows
            if k not in table.column_names:
                if k in self.texts:
                    text[self.extra[k]] = pa.nulls(table.num_rows, pa.string())
                else:
                    self.numbers[k].extend([None] * table.num_rows)


def _check_floats(table: Any, data: Any) -> None:
    """Arrow reads an integer past int64 (``10**20``) as a float, ``json.loads`` as an int: a
    chunk with a float column and a run of 19 digits anywhere goes record by record."""
    import pyarrow as pa

    if any(pa.types.is_floating(f.type) for f in table.schema) and LONG_DIGITS.search(data):
        raise NotClean("an integer Arrow may read as a float")


def _mask(arr: Any) -> np.ndarray:
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)


def _only_input_missing(table: Any, names: dict[str, str], i: int) -> bool:
    """Row ``i`` was flagged only for a null input, which an absent ``input`` key also reads as."""
    row = {k: table.column(names[k])[i].as_py() for k in PARTS}
    return row["input"] is None and all(isinstance(row[k], str) and row[k].strip() for k in ("instruction", "output"))


def _kind(t: Any) -> str:
    import pyarrow as pa

    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "text"
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return "number"
    raise NotClean(f"a field Arrow reads as {t}")  # dates, nested values: json.loads differs


def _valid_text(col: Any) -> None:
    import pyarrow as pa

    try:
        col.validate(full=True)  # Arrow's reader does not check UTF-8; json.loads does
    except pa.ArrowInvalid:
        raise NotClean("bad UTF-8") from None
