"""Where a pool's records come from, whatever ``load(path: ...)`` names.

* one file: ``.json`` / ``.jsonl`` / ``.parquet`` (pool_files.py reads them);
* Parquet shards: a folder of ``*.parquet`` files, or a glob (``data/train-*.parquet``),
  read in sorted order with one row numbering across them;
* a Hugging Face ``datasets`` folder written by ``save_to_disk`` (a ``Dataset``, or a
  ``DatasetDict`` and a ``split``): its Arrow files are read memory-mapped with pyarrow,
  no ``datasets`` import needed;
* ``hf://user/dataset[:split]``: a hub dataset, through ``datasets.load_dataset``
  (``pip install 'dslrun[hf]'``); a preview (``dslrun check``) streams the first rows
  instead of downloading the whole dataset;
* ``memory://...``: a pool held by the Python API (memory_pools.py).

``open_pool`` returns a ``Source``: its records as ``(row, record, problem)``, the format
``save`` writes by default, and a label for messages. ``read_pool`` validates the records
the same way whatever the source.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dslrun.runtime.data import memory_pools

HF_PREFIX = "hf://"
GLOB_CHARS = "*?["
BATCH_ROWS = 8192

Records = Iterator[tuple[int, Any, str | None]]


@dataclass(frozen=True)
class Source:
    label: str
    fmt: str
    records: Callable[[], Records]
    file: Path | None = None  # one JSONL or JSON file: Arrow's reader may read it (arrow_jsonl.py, arrow_json_array.py)


def _error(message: str) -> Exception:
    from dslrun.runtime.data.pool_files import PoolError

    return PoolError(message)


def open_pool(path: str | Path, split: str | None = None, preview: bool = False) -> Source:
    from dslrun.runtime.data.pool_files import _read_records, file_format

    if memory_pools.is_memory(path):
        pool = memory_pools.lookup(str(path))
        return Source(str(path), pool.fmt, pool.records)
    if isinstance(path, str) and path.startswith(HF_PREFIX):
        return _hub(path, split, preview)
    if any(c in str(path) for c in GLOB_CHARS):
        files = sorted(Path(f) for f in glob.glob(str(path), recursive=True) if Path(f).is_file())
        if not files:
            raise _error(f"{path}: no file matches this pattern")
        return _parquet_set(str(path), files)
    p = Path(path)
    if not p.exists():
        raise _error(f"{p}: pool file not found")
    if p.is_dir():
        return _folder(p, split)
    fmt = file_format(p)
    return Source(str(p), fmt, lambda: _read_records(p, fmt), p if fmt in ("jsonl", "json") and p.is_file() else None)


def _folder(p: Path, split: str | None) -> Source:
    if (p / "dataset_dict.json").is_file():  # DatasetDict.save_to_disk: one folder per split
        splits = json.loads((p / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
        chosen = _pick_split(str(p), splits, split)
        return _arrow_folder(p / chosen, f"{p}[{chosen}]")
    if (p / "state.json").is_file():  # Dataset.save_to_disk
        if split is not None:
            raise _error(f"{p}: `split: {split}` given, but this datasets folder holds one split")
        return _arrow_folder(p, str(p))
    shards = sorted(f for f in p.rglob("*.parquet") if f.is_file())
    if shards:
        return _parquet_set(str(p), shards)
    raise _error(f"{p}: a folder, but neither a datasets folder (save_to_disk) nor Parquet shards")


def _pick_split(label: str, splits: list[str], split: str | None) -> str:
    if split is not None:
        if split not in splits:
            raise _error(f"{label}: no split `{split}`; it has {', '.join(splits)}")
        return split
    if len(splits) == 1:
        return splits[0]
    if "train" in splits:
        return "train"
    raise _error(f"{label}: several splits ({', '.join(splits)}); name one with `split:`")


def _parquet_set(label: str, files: list[Path]) -> Source:
    bad = [f.name for f in files if f.suffix.lower() not in (".parquet", ".pq")]
    if bad:
        raise _error(f"{label}: shards must be Parquet files, found {', '.join(bad[:3])}")

    def records() -> Records:
        import pyarrow.parquet as pq

        i = 0
        for f in files:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=BATCH_ROWS):
                for rec in batch.to_pylist():
                    yield i, rec, None
                    i += 1

    return Source(label, "parquet", records)


def _arrow_folder(p: Path, label: str) -> Source:
    """A ``save_to_disk`` folder: Arrow IPC streams listed in state.json, memory-mapped."""
    state = json.loads((p / "state.json").read_text(encoding="utf-8"))
    files = [p / f["filename"] for f in state.get("_data_files", [])]
    if state.get("_indices_data_files"):
        raise _error(f"{label}: saved with an indices mapping; save it again after flatten_indices()")

    def records() -> Records:
        import pyarrow as pa

        i = 0
        for f in files:
            with pa.memory_map(str(f)) as source:
                for batch in pa.ipc.open_stream(source):
                    for rec in batch.to_pylist():
                        yield i, rec, None
                        i += 1

    return Source(label, "hf", records)


def parse_hub_id(path: str) -> tuple[str, str | None]:
    """``hf://user/dataset:split`` → (``user/dataset``, ``split``)."""
    name, _, split = path[len(HF_PREFIX):].partition(":")
    return name.strip("/"), split or None


def _hub(path: str, split: str | None, preview: bool) -> Source:
    name, in_id = parse_hub_id(path)
    split = split or in_id
    if not name:
        raise _error(f"{path}: name a dataset, e.g. hf://tatsu-lab/alpaca:train")
    try:
        import datasets
    except ImportError:
        raise _error(f"{path}: reading hub datasets needs the `datasets` package: pip install 'dslrun[hf]'") from None

    def records() -> Records:
        try:
            if split is None:
                dd = datasets.load_dataset(name, streaming=preview)
                ds = dd[_pick_split(path, list(dd), None)]
            else:
                ds = datasets.load_dataset(name, split=split, streaming=preview)
        except Exception as e:  # offline, unknown id, no such split: one clear line, no traceback
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise _error(f"{path}: cannot load `{name}` from the Hugging Face hub ({type(e).__name__}: {first}). "
                         "Offline? Download it once where the hub is reachable and pass the folder it was "
                         "saved to (Dataset.save_to_disk); with HF_HUB_OFFLINE=1 only datasets already in the "
                         "local hub cache load") from None
        rows = ds if preview else ds.with_format("arrow").iter(batch_size=BATCH_ROWS)
        i = 0
        for item in rows:
            for rec in ([item] if preview else item.to_pylist()):
                yield i, rec, None
                i += 1

    return Source(path, "hf", records)
