"""``load``: read a candidate pool (Alpaca JSON/JSONL, ShareGPT, OpenAI messages, Parquet;
Parquet shards, a Hugging Face ``datasets`` folder or ``hf://`` hub id; runtime/data/pool_sources.py)."""

from __future__ import annotations

from pydantic import Field

from dslrun.core.columns import BASE_COLUMNS, Columns
from dslrun.core.context import RunContext
from dslrun.core.cost import Stage
from dslrun.core.params import InputPath, Params
from dslrun.operators.base import TableOperator
from dslrun.operators.registry import register
from dslrun.runtime.data.pool_files import read_pool, sniff_columns, write_quarantine
from dslrun.runtime.data.table import Table


class LoadParams(Params):
    path: InputPath = Field(description="the pool: a .json, .jsonl or .parquet file, a folder or glob of Parquet "
                                        "shards, a datasets folder (save_to_disk), or hf://user/dataset[:split]")
    split: str | None = Field(None, description="the split of a datasets folder or hub dataset with several "
                                                "(default: the only one, else train)")
    limit: int = Field(0, ge=0, description="keep only the first N valid samples (0: all)")
    fields: dict[str, str] = Field(default_factory=dict,
                                   description="map instruction/input/output to your file's field names")


@register
class Load(TableOperator[LoadParams]):
    """Read a pool; malformed rows go to quarantine/<step>.jsonl with the reason."""

    name = "load"
    stage = Stage.IO
    n_inputs = 0

    def output_columns(self, inputs: list[Columns]) -> Columns:
        cols = dict(BASE_COLUMNS)
        cols.update(sniff_columns(self.params.path, self.params.fields, self.params.split))
        return cols

    def run(self, inputs: list[Table], ctx: RunContext) -> Table:

        loaded = read_pool(self.params.path, self.params.limit, self.params.fields,
                           spill_rows=ctx.settings.spill_rows, spill_dir=ctx.settings.tmp_dir, split=self.params.split)
        ctx.stats.quarantined = len(loaded.quarantined)
        if loaded.quarantined and not ctx.dry_run:
            path = ctx.out_dir / "quarantine" / f"{ctx.node}.jsonl"
            write_quarantine(path, loaded.quarantined)
            ctx.stats.notes.append(f"{len(loaded.quarantined)} malformed rows quarantined to {path}")
        return loaded.table
