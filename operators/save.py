"""``save``: write the subset in the pool's own schema, plus a scores table."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from dslrun.core.context import RunContext
from dslrun.core.cost import Stage
from dslrun.core.params import OutputPath, Params
from dslrun.operators.base import TableOperator
from dslrun.operators.registry import register
from dslrun.runtime.data.arrow_records import text_if_mixed
from dslrun.runtime.data.pool_files import atomic_write, write_records
from dslrun.runtime.data.pool_table import BASE
from dslrun.runtime.data.pool_writers import write_hf, write_llamafactory
from dslrun.runtime.data.table import Table

SUFFIX = {"json": ".json", "jsonl": ".jsonl", "parquet": ".parquet", "hf": ""}
BY_SUFFIX = {v: k for k, v in SUFFIX.items() if v}


class SaveParams(Params):
    path: OutputPath | None = Field(None, description="output file (a folder for hf), relative to --out "
                                                      "(default: <step>.<pool format>)")
    format: Literal["auto", "json", "jsonl", "parquet", "hf", "llamafactory"] = Field(
        "auto", description="auto: from the path's suffix, else the pool's own format; hf: a datasets folder "
                            "(save_to_disk); llamafactory: the file plus its dataset_info.json entry")
    name: str | None = Field(None, description="llamafactory: the entry's name in dataset_info.json "
                                               "(default: the file's stem)")
    scores: Literal["parquet", "jsonl", "none"] = Field("parquet", description="format of the scores table")


@register
class Save(TableOperator[SaveParams]):
    """Write the selected samples as the pool stored them (drop-in for LLaMA-Factory, axolotl, TRL)."""

    name = "save"
    stage = Stage.IO

    def run(self, inputs: list[Table], ctx: RunContext) -> Table:
        (table,) = inputs
        if ctx.dry_run:
            return table
        fmt = self.params.format
        given = Path(self.params.path).suffix if self.params.path else ""
        if fmt == "auto":  # an explicit file suffix wins, else the pool's own format
            fmt = BY_SUFFIX.get(given, table.meta.get("format", "json"))
        file_fmt = fmt
        if fmt == "llamafactory":  # the data file: by its suffix, else the pool's file format, else JSON
            pool_fmt = table.meta.get("format")
            file_fmt = BY_SUFFIX.get(given, pool_fmt if pool_fmt in BY_SUFFIX.values() else "json")
        path = Path(self.params.path) if self.params.path else Path(f"{_stem(ctx.node)}{SUFFIX[file_fmt]}")
        path = path if path.is_absolute() else ctx.out_dir / path
        records = (r for block in table.blocks("_record") for r in block)
        written = [str(path)]
        if fmt == "hf":
            write_hf(path, records)
        elif fmt == "llamafactory":
            info = write_llamafactory(path, list(records), file_fmt, table.meta.get("schema", "alpaca"),
                                      table.meta.get("fields") or {}, self.params.name or path.stem)
            written.append(str(info))
        else:
            empty = pool_schema(table) if fmt == "parquet" and len(table) == 0 else None
            write_records(path, records, fmt, empty)
        if self.params.scores != "none":
            stem = path.name if fmt == "hf" else path.stem  # a datasets folder may have a dot in its name
            spath = path.with_name(stem + ".scores." + self.params.scores)
            write_scores(spath, table, self.params.scores, ctx.input_columns)
            written.append(str(spath))
        ctx.stats.notes.append("wrote " + ", ".join(written))
        table.meta.setdefault("written", []).extend(written)
        return table


def _stem(node: str) -> str:
    return "selected" if node.startswith("save_") else node


def score_columns(table: Table) -> list[str]:
    """Everything but the raw text: ids, row numbers, extra fields and computed scores."""
    skip = set(BASE) - {"id", "n_turns"}
    return [c for c in table.column_names if c not in skip and table.ndim(c) == 1]


ARROW = {"str": "string", "int": "int64", "float": "float64", "bool": "bool"}


def arrow_type(kind: str | None, col: np.ndarray):
    """The Parquet type of a column, from its compiled kind when no value can show it."""
    import pyarrow as pa

    if col.dtype != object:
        return pa.from_numpy_dtype(col.dtype)
    if kind == "list":
        return pa.list_(pa.string())
    return pa.type_for_alias(ARROW.get(kind or "str", "string"))


def pool_schema(table: Table):
    """Typed columns for an empty selection: the source Parquet's own, else Alpaca's three texts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = table.meta.get("source")
    if table.meta.get("format") == "parquet" and source and Path(source).is_file():
        return pq.read_schema(source).remove_metadata()
    if table.meta.get("schema", "alpaca") == "alpaca":
        return pa.schema([(c, pa.string()) for c in ("instruction", "input", "output")])
    return None


def write_scores(path: Path, table: Table, fmt: str, kinds: dict[str, str] | None = None) -> None:
    cols = ["id", "_row", *[c for c in score_columns(table) if c != "id"]]
    if fmt == "jsonl":
        rows = table.rows(cols)
        for r in rows:
            r["row"] = r.pop("_row")
        write_records(path, rows, "jsonl")
        return
    import pyarrow.parquet as pq

    scores = scores_arrow(table, kinds)
    if not len(table):
        atomic_write(path, lambda tmp: pq.ParquetWriter(tmp, scores.schema).close())
        return
    atomic_write(path, lambda tmp: pq.write_table(scores, tmp))


def scores_arrow(table: Table, kinds: dict[str, str] | None = None) -> Any:
    """The scores table as a ``pyarrow.Table``: id, row, then every score column."""
    import pyarrow as pa

    arrays = {}
    for c in ["id", "_row", *[c for c in score_columns(table) if c != "id"]]:
        held = table.arrow(c) if c == "id" else None  # compact ids become Arrow text directly
        if held is not None:
            arrays["id"] = held
            continue
        col = table.column(c)
        name = "row" if c == "_row" else c
        if not len(col):  # nothing to infer a type from: `id` would come out as null
            kind = "str" if c == "id" else "int" if c == "_row" else (kinds or {}).get(c)
            arrays[name] = pa.array([], type=arrow_type(kind, col))
            continue
        arrays[name] = text_if_mixed(col.tolist()) if col.dtype == object else pa.array(np.asarray(col))
    return pa.table(arrays)
