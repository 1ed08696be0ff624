"""Writers for trainers' own layouts: a Hugging Face ``datasets`` folder, and LLaMA-Factory's
data file plus its ``dataset_info.json`` entry. Records keep the pool's own schema; these
only choose the container (and, for LLaMA-Factory, describe the columns it already has)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dslrun.runtime.data.out_paths import make_dirs
from dslrun.runtime.data.pool_files import ROLE_ALIASES, PoolError, atomic_write, write_records

INFO_NAME = "dataset_info.json"


def write_hf(path: Path, records: Iterable[Any]) -> None:
    """``path`` becomes a folder ``datasets.load_from_disk`` reads (``Dataset.save_to_disk``),
    written beside it first and renamed, so a crash never leaves half a dataset."""
    try:
        import datasets
    except ImportError:
        raise PoolError("save(format: hf) needs the `datasets` package: pip install 'dslrun[hf]'") from None
    from dslrun.runtime.data.arrow_records import records_to_arrow

    table = records_to_arrow(list(records))
    make_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.unlink() if tmp.is_symlink() else shutil.rmtree(tmp, ignore_errors=True)
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # dslrun shows its own progress
    try:
        datasets.Dataset(table).save_to_disk(str(tmp))
        if path.is_symlink() or path.is_file():  # a link is replaced, never followed
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if bars:
            datasets.enable_progress_bars()


def write_llamafactory(path: Path, records: list[Any], fmt: str, schema: str, fields: dict[str, str],
                       name: str) -> Path:
    """The subset at ``path`` (JSON, JSONL or Parquet) and its entry ``name`` in the
    ``dataset_info.json`` beside it (other entries kept), so ``dataset_dir`` = that folder and
    ``dataset: name`` train on it as is. Returns the dataset_info.json path."""
    write_records(path, records, fmt)
    info_path = path.parent / INFO_NAME
    info: dict[str, Any] = {}
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise PoolError(f"{info_path}: not valid JSON ({e.msg}); fix or remove it") from None
    info[name] = {"file_name": path.name, **describe(records, schema, fields)}
    atomic_write(info_path, lambda tmp: tmp.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n",
                                                       encoding="utf-8"))
    return info_path


def describe(records: list[Any], schema: str, fields: dict[str, str]) -> dict[str, Any]:
    """``formatting``, ``columns`` (and ``tags``) of a LLaMA-Factory entry for these records."""
    keys = {k for r in records if isinstance(r, dict) for k in r}
    if schema == "alpaca":
        columns = {"prompt": fields.get("instruction", "instruction"), "query": fields.get("input", "input"),
                   "response": fields.get("output", "output")}
        columns.update({k: k for k in ("system", "history") if k in keys})
        return {"formatting": "alpaca", "columns": columns}
    column, role_tag, content_tag = (("conversations", "from", "value") if schema == "sharegpt"
                                     else ("messages", "role", "content"))
    columns = {"messages": column, **{k: k for k in ("system", "tools") if k in keys}}
    tags = {"role_tag": role_tag, "content_tag": content_tag}
    for role, tag in _role_names(records, column, role_tag).items():
        tags[f"{role}_tag"] = tag
    return {"formatting": "sharegpt", "columns": columns, "tags": tags}


def _role_names(records: list[Any], column: str, role_tag: str) -> dict[str, str]:
    """The pool's own spelling of each role (``human``/``gpt``, ``user``/``assistant``, ...),
    the most frequent when a pool mixes them."""
    counts: dict[str, dict[str, int]] = {}
    for r in records:
        for turn in r.get(column) or []:
            raw = turn.get(role_tag) if isinstance(turn, dict) else None
            if not isinstance(raw, str):
                continue
            role = ROLE_ALIASES.get(raw)
            if role is not None:
                counts.setdefault(role, {}).setdefault(raw, 0)
                counts[role][raw] += 1
    defaults = {"user": "human", "assistant": "gpt"} if role_tag == "from" else {"user": "user", "assistant": "assistant"}
    names = dict(defaults)
    names.update({role: max(c, key=lambda k: c[k]) for role, c in counts.items()})
    return names
