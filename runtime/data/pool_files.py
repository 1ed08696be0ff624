"""Reading and writing candidate pools in the formats people train with.

Formats: Alpaca-style JSON/JSONL (``instruction``, ``input``, ``output``, extra
fields kept), ShareGPT (``conversations`` of ``from``/``value``), OpenAI
messages (``messages`` of ``role``/``content``), and Parquet holding any of
these. A record that cannot be used (missing or mistyped fields, an empty
response, bad UTF-8) is *quarantined*: written to a side file with the reason
and counted, while the run goes on.

The sample id is a hash of the sample's normalised content (NFC, line endings,
surrounding whitespace), so the same sample has the same id in every pool and
every run — which is what makes per-sample caching work across pools.
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dslrun.core.keys import sample_id
from dslrun.runtime.data.derived_column import alpaca_messages
from dslrun.runtime.data.out_paths import fresh_file, make_dirs
from dslrun.runtime.data.pool_table import PoolTableBuilder
from dslrun.runtime.data.record_checks import TOO_DEEP, for_quarantine, record_problem, snippet
from dslrun.runtime.data.table import Table

ROLE_ALIASES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "model": "assistant",
                "system": "system"}


class PoolError(Exception):
    """The pool cannot be read at all (missing file, not JSON, unknown format)."""


@dataclass
class Quarantined:
    row: int
    reason: str
    record: Any


@dataclass
class Loaded:
    table: Table
    quarantined: list[Quarantined] = field(default_factory=list)
    schema: str = "alpaca"
    fmt: str = "json"


def file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise PoolError(f"{path}: unknown pool format `{suffix}` (expected .json, .jsonl, .parquet, a folder of "
                    "Parquet shards, a datasets folder or hf://user/dataset)")


def _read_records(path: Path, fmt: str) -> Iterator[tuple[int, Any, str | None]]:
    """(row, record, problem) for every record; problem is set when the row is unreadable."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        i = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=8192):  # a batch at a time
            for rec in batch.to_pylist():
                yield i, rec, None
                i += 1
        return
    if fmt == "jsonl":
        yield from _read_jsonl(path)
        return
    from dslrun.runtime.data.json_stream import (
        JsonStreamError,
        NotAnArray,
        TooDeep,
        iter_json_array,
    )

    try:
        for i, rec in enumerate(iter_json_array(path)):
            if isinstance(rec, TooDeep):
                yield i, rec.text, TOO_DEEP
            else:
                yield i, rec, None
        return
    except JsonStreamError as e:
        raise PoolError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    except NotAnArray:
        pass
    # Not an array: an object wrapping one ({"data": [...]}), read whole.
    text = path.read_bytes().decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise PoolError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    except RecursionError:  # read whole (not an array), so it cannot be skipped record by record
        raise PoolError(f"{path}: {TOO_DEEP}; a pool file that is one JSON array or JSONL is read "
                        "record by record, and such a record is quarantined alone") from None
    if isinstance(data, dict):
        for key in ("data", "examples", "samples", "train"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
    if not isinstance(data, list):
        raise PoolError(f"{path}: expected a JSON array of samples (or JSONL), found {type(data).__name__}")
    for i, rec in enumerate(data):
        yield i, rec, None


def _read_jsonl(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """Line by line from the file (never the whole file in memory), with the line breaks of
    ``bytes.splitlines`` so row numbers match the file as editors count them. A UTF-8 byte
    order mark starting a line (the file, or files concatenated) is not part of the record."""
    i = -1
    with path.open("rb") as f:
        for chunk in f:
            for line in chunk.splitlines() or [b""]:
                i += 1
                line = line.removeprefix(codecs.BOM_UTF8)
                if not line.strip():
                    continue
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as e:
                    yield i, line.decode("utf-8", errors="replace"), f"bad UTF-8 at byte {e.start}"
                    continue
                try:
                    yield i, json.loads(text), None
                except json.JSONDecodeError as e:
                    yield i, text, f"invalid JSON: {e.msg} at column {e.colno}"
                except RecursionError:
                    yield i, snippet(text), TOO_DEEP


def detect_schema(rec: dict, fields: dict[str, str]) -> str:
    if "conversations" in rec:
        return "sharegpt"
    if "messages" in rec:
        return "messages"
    if fields.get("instruction", "instruction") in rec or fields.get("output", "output") in rec:
        return "alpaca"
    return "unknown"


def _conversation(turns: Any, role_key: str, text_key: str) -> tuple[list[dict[str, str]] | None, str | None]:
    if not isinstance(turns, list) or not turns:
        return None, "conversation is empty or not a list"
    out = []
    for j, t in enumerate(turns):
        if not isinstance(t, dict):
            return None, f"turn {j} is not an object"
        role, text = t.get(role_key), t.get(text_key)
        if role not in ROLE_ALIASES:
            return None, f"turn {j} has unknown role {role!r}"
        if not isinstance(text, str):
            return None, f"turn {j} `{text_key}` is not a string"
        out.append({"role": ROLE_ALIASES[role], "content": text})
    if not any(m["role"] == "assistant" and m["content"].strip() for m in out):
        return None, "empty output: no non-empty assistant turn"
    if not any(m["role"] == "user" for m in out):
        return None, "no user turn"
    return out, None


def parse_record(rec: Any, schema: str, fields: dict[str, str]) -> tuple[dict[str, Any] | None, str | None]:
    """The base columns of one record, or (None, reason) to quarantine it."""
    problem = record_problem(rec)
    if problem is not None:
        return None, problem
    if not isinstance(rec, dict):
        return None, f"record is a {type(rec).__name__}, not an object"
    if schema in ("sharegpt", "messages"):
        key = "conversations" if schema == "sharegpt" else "messages"
        role_key, text_key = ("from", "value") if schema == "sharegpt" else ("role", "content")
        msgs, problem = _conversation(rec.get(key), role_key, text_key)
        if msgs is None:
            return None, problem
        users = [m["content"] for m in msgs if m["role"] == "user"]
        answers = [m["content"] for m in msgs if m["role"] == "assistant"]
        return {"id": sample_id(msgs), "instruction": users[0], "input": "",
                "output": "\n\n".join(answers), "messages": msgs, "n_turns": len(answers)}, None
    names = {k: fields.get(k, k) for k in ("instruction", "input", "output")}
    values = {}
    for k, src in names.items():
        v = rec.get(src, "" if k == "input" else None)
        if v is None:
            return None, f"missing field `{src}`"
        if not isinstance(v, str):
            return None, f"field `{src}` is a {type(v).__name__}, not a string"
        values[k] = v
    if not values["output"].strip():
        return None, "empty output"
    if not values["instruction"].strip():
        return None, "empty instruction"
    msgs = alpaca_messages(values["instruction"], values["input"], values["output"])
    sid = sample_id(msgs, (values["instruction"], values["input"], values["output"]))
    return {"id": sid, **values, "messages": msgs, "n_turns": 1}, None


def read_pool(path: str | Path, limit: int = 0, fields: dict[str, str] | None = None,
              spill_rows: int | None = None, spill_dir: str | Path | None = None, split: str | None = None,
              preview: bool = False) -> Loaded:
    """Read and validate a pool (any source pool_sources.py opens: a file, Parquet shards, a
    datasets folder, a hub id, a pool in memory). With ``spill_rows``, a pool of more rows than
    that keeps its text and records on disk (``DiskColumn``s; runtime/data/disk_columns.py)
    instead of in memory. ``preview``: only a first look (a hub dataset is streamed)."""
    from dslrun.runtime.data.pool_sources import open_pool

    source = open_pool(path, split, preview)
    path, fmt = source.label, source.fmt
    fields = fields or {}
    if source.file is not None and not preview:
        from dslrun.runtime.data import arrow_json_array, arrow_jsonl

        read_clean = arrow_jsonl.read_clean_jsonl if fmt == "jsonl" else arrow_json_array.read_clean_json_array
        clean = read_clean(source.file, limit, fields, spill_rows, spill_dir)
        if clean is not None:
            return Loaded(clean[0], clean[1], "alpaca", fmt)
    quarantined: list[Quarantined] = []
    schema: str | None = None
    builder: PoolTableBuilder | None = None
    kept = 0
    for i, rec, problem in source.records():
        if limit and kept >= limit:
            break
        if problem is None and schema is None and isinstance(rec, dict) and record_problem(rec) is None:
            schema = detect_schema(rec, fields)
            if schema == "unknown":
                raise PoolError(f"{path}: record {i} has none of the known layouts "
                                f"(instruction/output, conversations, messages); its keys: {sorted(rec)[:10]}. "
                                "Map your field names with load(..., fields: {instruction: \"prompt\", output: \"response\"})")
        if problem is None:
            base, problem = parse_record(rec, schema or "alpaca", fields)
        if problem is not None:
            quarantined.append(Quarantined(i, problem, for_quarantine(rec, problem)))
            continue
        assert base is not None  # parse_record gives either the columns or a reason
        if builder is None:
            builder = PoolTableBuilder(schema or "alpaca", fields, spill_rows, spill_dir)
        builder.add(base, rec, i)
        kept += 1
    builder = builder or PoolTableBuilder(schema or "alpaca", fields, None, None)
    table = builder.finish({"source": path, "schema": schema or "alpaca", "format": fmt, "fields": dict(fields)})
    return Loaded(table, quarantined, schema or "alpaca", fmt)


def column_type(arr: np.ndarray) -> str:
    if arr.dtype == bool:
        return "bool"
    if np.issubdtype(arr.dtype, np.integer):
        return "int"
    if np.issubdtype(arr.dtype, np.floating):
        return "float" if arr.ndim == 1 else "vector"
    sample = next((x for x in arr if x is not None), None)
    if isinstance(sample, str):
        return "str"
    if isinstance(sample, (list, tuple)):
        return "list"
    return "any"


def sniff_columns(path: str | Path, fields: dict[str, str] | None = None, split: str | None = None) -> dict[str, str]:
    """Columns a pool will have, from its first records, for static checks (cheap)."""
    loaded = read_pool(path, limit=50, fields=fields, split=split, preview=True)
    t = loaded.table
    return {c: column_type(t.column(c)) for c in t.column_names}


# ---- writing ----

def atomic_write(path: Path, write) -> None:
    """Write through a temporary file and rename, so a crash never leaves half a file. Below a
    run's ``--out``, the write stays there (runtime/data/out_paths.py: a link at ``path`` is
    replaced, a folder link leading out is refused)."""
    make_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        fresh_file(tmp)
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()


def write_records(path: Path, records: Iterable[Any], fmt: str, empty_schema: Any = None) -> None:
    """Write records as they come (JSON and JSONL never hold them all; Parquet does).

    No records in Parquet: a file with ``empty_schema``'s typed columns and no row group
    (a zero-row row group is what readers such as ``datasets`` choke on)."""
    def write(tmp: Path) -> None:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            rows = list(records)
            if not rows:
                pq.ParquetWriter(tmp, empty_schema if empty_schema is not None else pa.schema([])).close()
                return
            pq.write_table(pa.Table.from_pylist(rows), tmp)
        elif fmt == "jsonl":
            with tmp.open("w", encoding="utf-8") as f:
                for r in records:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
        else:
            with tmp.open("w", encoding="utf-8") as f:
                _write_json_array(f, records)

    atomic_write(path, write)


def _write_json_array(f: Any, records: Iterable[Any]) -> None:
    """The bytes of ``json.dump(records, f, ensure_ascii=False, indent=2)`` plus a newline, one
    record at a time (JSON escapes line breaks inside strings, so every newline in a dumped
    record is layout and indenting it by two spaces nests the record in the array)."""
    first = True
    for r in records:
        f.write("[\n  " if first else ",\n  ")
        f.write(json.dumps(r, ensure_ascii=False, indent=2).replace("\n", "\n  "))
        first = False
    f.write("[]\n" if first else "\n]\n")


def write_quarantine(path: Path, items: list[Quarantined]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as f:
            for q in items:  # records are made writable when quarantined (for_quarantine)
                f.write(json.dumps({"row": q.row, "reason": q.reason, "record": q.record}, ensure_ascii=False,
                                   default=str) + "\n")

    atomic_write(path, write)
