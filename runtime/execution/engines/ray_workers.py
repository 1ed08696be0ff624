"""What runs on Ray workers: plain classes and functions, wrapped with ``ray.remote`` by
``ray.py`` (so importing this module imports neither Ray nor torch).

Workers compute and return; they never open the score cache. The driver commits what
they return, so the cache has exactly one writer however many nodes compute.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from dslrun.core.settings import RunSettings
from dslrun.runtime.cache.sqlite import decode, encode
from dslrun.runtime.data.table import Table
from dslrun.runtime.execution.context import RunContext
from dslrun.runtime.models.resident import ModelPool

PICKLED = b"dslrun-pickled:"  # column-name marker in Arrow blocks for values Arrow cannot hold


def worker_context(settings: dict[str, Any], models: ModelPool | None = None) -> RunContext:
    known = {k: v for k, v in settings.items() if k in RunSettings.model_fields}
    return RunContext(out_dir=Path("."), spec_dir=Path("."), cache=None, settings=RunSettings(**known),
                      models=models or ModelPool())


def follow_driver(settings: dict[str, Any]) -> None:
    """Work in the driver's directory when this node sees it (one machine, or a shared file
    system), so relative model and data paths in a spec mean what they mean to the driver."""
    cwd = settings.get("driver_cwd")
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)


class SampleWorker:
    """One model replica: holds one loaded model (its ModelPool) and computes batches on it."""

    def __init__(self, settings: dict[str, Any]):
        follow_driver(settings)
        self.ctx = worker_context(settings)

    def where(self) -> tuple[str, int]:
        return socket.gethostname(), os.getpid()

    def compute(self, op: Any, batch: Table) -> tuple[list, list[str]]:
        from dslrun.runtime.execution.sample_runner import compute_with_split

        self.ctx.stats.notes.clear()
        out = compute_with_split(op, batch, self.ctx)
        return [dict(r) for r in out], list(self.ctx.stats.notes)


class ApiEndpoint:
    """Sends every request to one endpoint, for every node and every run that uses it.

    It is an async actor: one event loop, thousands of requests in flight, and one rate
    limiter (the process-wide registry of this actor's process), so the endpoint's rpm/tpm
    hold across the cluster. Outcomes stream back one by one as they land, so the driver
    caches each paid reply at once, as the local engine does.
    """

    def __init__(self, settings: dict[str, Any]):
        follow_driver(settings)
        self.ctx = worker_context(settings)

    def where(self) -> tuple[str, int]:
        return socket.gethostname(), os.getpid()

    async def run(self, op: Any, requests: list, secrets: dict[str, str]) -> AsyncIterator[Any]:
        from dslrun.runtime.api.connect import backend_for, pool_for

        # The API key lives in the driver's environment; it travels as a call argument (not
        # in a runtime_env, which the cluster would keep and show) into this process only.
        os.environ.update(secrets)
        backend = backend_for(op.llm, op.model_name, self.ctx.models, op.env_vars().get("api_key_env"))
        pool = pool_for(op.llm, backend)
        queue: asyncio.Queue = asyncio.Queue()

        async def main() -> Any:
            try:
                return await pool.run(requests, backend, queue.put_nowait, parse=op.parse)
            finally:
                aclose = getattr(backend, "aclose", None)
                if aclose is not None:
                    await aclose()

        task = asyncio.create_task(main())
        while True:
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield getter.result()
                continue
            getter.cancel()
            while not queue.empty():
                yield queue.get_nowait()
            yield task.result()  # the RunSummary (raises if the pool failed)
            return


def shipped(op: Any, table: Table) -> Table:
    """The part of ``table`` a worker needs: ``id`` and the columns the operator reads
    (all but ``_record`` when it does not say)."""
    wanted = op.columns_read
    names = [c for c in table.all_columns
             if c != "_record" and (wanted is None or c == "id" or c in wanted)]
    return table.select(names)  # as stored: text held in Arrow stays Arrow (to_arrow)


# ---- Arrow blocks for Ray Data -------------------------------------------------------------

def to_arrow(table: Table) -> Any:
    """Columns as Arrow: numbers and text natively (text the pool read into Arrow goes as it
    is, without a Python string per value), anything else pickled per value."""
    import pyarrow as pa

    cols: dict[str, Any] = {}
    for name in table.all_columns:
        held = table.arrow(name)
        if held is not None:
            cols[name] = held
            continue
        col = table.column(name)
        if col.dtype != object and col.ndim == 1:
            cols[name] = pa.array(col)
        elif col.dtype == object and all(isinstance(v, str) for v in col):
            cols[name] = pa.array(col.tolist(), pa.string())
        else:
            cols[PICKLED.decode() + name] = pa.array([pickle.dumps(v) for v in col], pa.binary())
    return pa.table(cols)


def from_arrow(block: Any) -> Table:
    import pyarrow as pa

    from dslrun.runtime.data.table import as_column

    cols: dict[str, np.ndarray] = {}
    marker = PICKLED.decode()
    for name in block.column_names:
        values = block.column(name).to_pylist()
        if name.startswith(marker):
            cols[name[len(marker):]] = as_column([pickle.loads(v) for v in values], "any")
        elif pa.types.is_string(block.schema.field(name).type) or pa.types.is_large_string(
                block.schema.field(name).type):
            cols[name] = as_column(values, "str")
        else:
            cols[name] = block.column(name).to_numpy(zero_copy_only=False)
    return Table(cols)


class BlockCompute:
    """The ``map_batches`` function of a cheap per-sample operator: Arrow block in,
    (id, JSON-encoded result) out. The driver decodes and commits each block."""

    def __init__(self, op: Any, settings: dict[str, Any]):
        self.op, self.settings = op, settings

    def __call__(self, block: Any) -> Any:
        import pyarrow as pa

        from dslrun.runtime.execution.sample_runner import compute_with_split

        table = from_arrow(block)
        out = compute_with_split(self.op, table, worker_context(self.settings))
        return pa.table({"id": pa.array([str(i) for i in table.ids], pa.string()),
                         "value": pa.array([encode(dict(r)) for r in out], pa.string())})


def decode_block(block: Any) -> tuple[list[str], list]:
    return block.column("id").to_pylist(), [decode(v) for v in block.column("value").to_pylist()]
