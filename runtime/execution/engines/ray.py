"""The Ray engine: the same plan, its per-sample work spread over a Ray cluster.

The driver (this process) schedules the DAG, runs table operators, and is the only
writer of the score cache. What it ships out:

* model operators → an actor pool (``SampleWorker``): one replica per GPU (or per node
  on CPU clusters), each holding one loaded model; the driver's length-bucketed batches
  stream to idle replicas, results come back per batch and are committed as they land.
  A killed replica is restarted by Ray and its batch retried; nothing committed is lost.
* cheap per-sample operators (CPU-resource ``SampleOperator``s, e.g. plugins) → Ray Data ``map_batches`` over Arrow
  blocks of the missing rows; each finished block is committed as it arrives.
* API operators → one async actor per endpoint (``ApiEndpoint``, named, on the driver's
  node) that owns the endpoint's rate limiter and API pool; outcomes stream back one by
  one and are cached at once, so no paid reply is lost when a worker or the driver dies.

See ARCHITECTURE.md ("Engines") for why the cache has one writer.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from dslrun.core.cost import Resource
from dslrun.core.settings import RunSettings
from dslrun.dsl.compile import Plan
from dslrun.operators.base import SampleOperator
from dslrun.operators.llm.base import LlmOperator
from dslrun.runtime.data.table import Table
from dslrun.runtime.execution.context import RunContext
from dslrun.runtime.execution.dispatch import Runners
from dslrun.runtime.execution.engines.base import EngineError
from dslrun.runtime.execution.executor import RunResult, execute
from dslrun.runtime.execution.llm_runner import run_llm_op
from dslrun.runtime.execution.sample_runner import Computed, run_sample_op

log = logging.getLogger("dslrun.ray")
NAMESPACE = "dslrun"
IN_FLIGHT = 2  # batches queued per replica, so a replica never waits for the driver
RESTARTS = 3  # a replica (or endpoint actor) killed this often in one step fails the step


def import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise EngineError("the ray engine needs Ray: pip install 'dslrun[ray]'") from e
    return ray


class RayEngine:
    name = "ray"

    def __init__(self, settings: RunSettings):
        ray = import_ray()
        address = settings.address
        self.ray, self.run_settings, self.address = ray, settings, address
        # what the workers get: the settings, and where the driver runs (see follow_driver)
        self.settings: dict[str, Any] = {**settings.model_dump(), "driver_cwd": os.getcwd()}
        self._owned = not ray.is_initialized()
        if self._owned:
            opts: dict[str, Any] = {"namespace": NAMESPACE, "logging_level": logging.WARNING,
                                    "log_to_driver": settings.ray_worker_logs}
            ip = os.environ.get("DSLRUN_RAY_NODE_IP")
            if ip:  # the driver's address on the cluster (e.g. 127.0.0.1 for a one-machine cluster)
                opts["_node_ip_address"] = ip
            try:
                if address:
                    ray.init(address=address, **opts)
                else:  # a throwaway local cluster
                    ray.init(num_cpus=settings.ray_num_cpus, include_dashboard=False, **opts)
            except ConnectionError as e:
                raise EngineError(f"cannot reach the Ray cluster at {address}: {e}") from e
        self._quiet_data()
        self.runners = RayRunners(self)

    def _quiet_data(self) -> None:
        from ray.data import DataContext

        dc = DataContext.get_current()
        dc.enable_progress_bars = False
        dc.print_on_execution_start = False

    def execute(self, plan: Plan, ctx: RunContext, workers: int) -> RunResult:
        return execute(plan, ctx, workers=workers, runners=self.runners)

    def describe(self) -> dict[str, Any]:
        res = self.ray.cluster_resources()
        return {"name": self.name, "address": self.address or "local",
                "nodes": sum(1 for n in self.ray.nodes() if n.get("Alive")),
                "cpus": res.get("CPU", 0), "gpus": res.get("GPU", 0)}

    def close(self) -> None:
        self.runners.close()
        if self._owned:
            self.ray.shutdown()

    # ---- replica sizing ----
    def replica_resources(self) -> dict[str, float]:
        gpus = self.run_settings.gpus_per_replica
        if gpus is None:
            gpus = 1.0 if self.ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        return {"num_cpus": float(self.run_settings.cpus_per_replica or 1.0), "num_gpus": float(gpus)}

    def replicas(self, res: dict[str, float]) -> int:
        n = self.run_settings.replicas
        if n:
            return int(n)
        total = self.ray.cluster_resources()
        if res["num_gpus"] > 0:  # one replica per GPU (or per num_gpus share)
            return max(1, int(total.get("GPU", 0) // res["num_gpus"]))
        nodes = sum(1 for n in self.ray.nodes() if n.get("Alive"))
        return max(1, min(nodes, int(total.get("CPU", 1) // max(res["num_cpus"], 1e-9))))


class RayRunners(Runners):
    def __init__(self, engine: RayEngine):
        self.engine, self.ray = engine, engine.ray
        self._endpoints: dict[str, Any] = {}

    def sample(self, op: SampleOperator, table: Table, ctx: RunContext) -> Table:
        compute = self.replica_batches if op.resource == Resource.MODEL else self.data_batches
        return run_sample_op(op, table, ctx, compute=compute)

    def llm(self, op: LlmOperator, table: Table, ctx: RunContext) -> Table:
        return run_llm_op(op, table, ctx, send=self.api_requests)

    # ---- model operators: an actor pool of replicas ----
    def replica_batches(self, op: SampleOperator, table: Table, batches: list[list[int]],
                        ctx: RunContext) -> Iterator[Computed]:
        if not batches:
            return
        from dslrun.runtime.execution.engines.ray_workers import SampleWorker, shipped

        ray, engine = self.ray, self.engine
        res = engine.replica_resources()
        n = min(len(batches), engine.replicas(res))
        cls = ray.remote(SampleWorker).options(**res, max_restarts=RESTARTS, max_task_retries=RESTARTS,
                                               scheduling_strategy="SPREAD")
        actors = [cls.remote(engine.settings) for _ in range(n)]
        ctx.stats.notes.append(f"ray: {n} replica(s) with {res}")
        todo = deque(batches)
        running: dict[Any, tuple[Any, Any]] = {}

        def submit(actor: Any) -> None:
            rows = todo.popleft()
            batch = shipped(op, table.take(rows))
            running[actor.compute.remote(op, batch)] = (actor, batch.ids)

        try:
            for _ in range(IN_FLIGHT):
                for actor in actors:
                    if todo:
                        submit(actor)
            while running:
                ready, _ = ray.wait(list(running), num_returns=1)
                actor, ids = running.pop(ready[0])
                out, notes = ray.get(ready[0])
                ctx.stats.notes.extend(notes)
                if todo:
                    submit(actor)
                yield ids, out
        finally:
            for actor in actors:  # stops what is still running; frees the CPUs/GPUs for the next step
                ray.kill(actor)

    # ---- cheap per-sample operators: Ray Data ----
    def data_batches(self, op: SampleOperator, table: Table, batches: list[list[int]],
                     ctx: RunContext) -> Iterator[Computed]:
        """Batches as Arrow blocks through ``map_batches``, a window of blocks at a time, so
        the driver holds at most one window's blocks and results however large the pool."""
        if not batches:
            return
        import ray.data

        from dslrun.runtime.execution.engines.ray_workers import (
            BlockCompute,
            decode_block,
            shipped,
            to_arrow,
        )

        fn = BlockCompute(op, self.engine.settings)
        window = self.engine.run_settings.ray_window_rows
        per = max(1, window // max(1, len(batches[0])))
        for start in range(0, len(batches), per):
            blocks = [to_arrow(shipped(op, table.take(rows))) for rows in batches[start:start + per]]
            ds = ray.data.from_arrow(blocks)
            del blocks
            out = ds.map_batches(fn, batch_size=None, batch_format="pyarrow", zero_copy_batch=True)
            for block in out.iter_batches(batch_size=None, batch_format="pyarrow"):
                yield decode_block(block)

    # ---- API operators: one async actor per endpoint ----
    def endpoint_name(self, op: LlmOperator) -> str:
        from dslrun.runtime.api.limits import endpoint_key

        p = op.llm
        key = f"local {op.model_name}" if p.backend == "local" else endpoint_key(op.endpoint_url(), op.model_name)
        return "dslrun-api-" + hashlib.sha256(key.encode()).hexdigest()[:16]

    def endpoint(self, op: LlmOperator) -> Any:
        """The endpoint's actor: found by name if another node or run already started it."""
        from dslrun.runtime.execution.engines.ray_workers import ApiEndpoint

        p, name = op.llm, self.endpoint_name(op)
        if name not in self._endpoints:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            ray = self.ray
            here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
            res = self.engine.replica_resources() if p.backend == "local" else {"num_cpus": 0}
            self._endpoints[name] = ray.remote(ApiEndpoint).options(
                name=name, get_if_exists=True, max_restarts=RESTARTS, max_concurrency=1000,
                scheduling_strategy=here, **res).remote(self.engine.settings)
        return self._endpoints[name]

    def api_requests(self, op: LlmOperator, requests: list, ctx: RunContext,
                     on_result: Callable[[Any], None]) -> Any:
        from dslrun.runtime.api.types import RunSummary
        from dslrun.runtime.run import env_vars

        ray = self.ray
        secrets = {var: os.environ[var] for var in env_vars(op).values() if var and var in os.environ}
        left = {r.key: r for r in requests}
        for attempt in range(RESTARTS + 1):
            gen = self.endpoint(op).run.remote(op, list(left.values()), secrets)
            try:
                for ref in gen:
                    item = ray.get(ref)
                    if isinstance(item, RunSummary):
                        return item
                    left.pop(item.key, None)
                    on_result(item)
            except ray.exceptions.RayActorError:
                # The endpoint actor died (its node, or a kill). Outcomes already delivered are
                # cached; ask again only for the rest (a call in flight at the moment of death
                # may be paid twice, exactly as when a local run is killed mid-call).
                if attempt == RESTARTS:
                    raise
                self._endpoints.pop(self.endpoint_name(op), None)  # its owner may be gone: look it up again
                log.warning("API actor died; resending the %d requests with no outcome", len(left))
                ctx.stats.notes.append(f"ray: API actor restarted; {len(left)} requests resent")
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        for actor in self._endpoints.values():
            with contextlib.suppress(Exception):  # already gone with its node
                self.ray.kill(actor)
        self._endpoints.clear()
