"""The score store contract: one suite that every store passes (SQLite, in memory)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from dslrun.runtime.cache.claims import HOST, share
from dslrun.runtime.cache.memory import MemoryStore
from dslrun.runtime.cache.sqlite import SqliteStore
from dslrun.runtime.cache.store import ReadOnlyStore

TTL = 30.0


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class Stores:
    """Handles on one store, as separate processes would open it."""

    def __init__(self, kind: str, tmp_path: Path):
        self.kind, self.path, self.clock = kind, tmp_path / "scores.sqlite", Clock()
        self.open: list = []
        self._mem: MemoryStore | None = None

    def handle(self, readonly: bool = False):
        kw = {"ttl": TTL, "clock": self.clock, "autorenew": False}
        if self.kind == "sqlite":
            if readonly:
                store = SqliteStore(self.path, readonly=True, clock=self.clock)
            else:
                store = SqliteStore(self.path, **kw)
        elif self._mem is None:
            store = self._mem = MemoryStore(**kw, readonly=readonly)
        else:
            store = self._mem.handle(readonly=readonly, autorenew=False)
        self.open.append(store)
        return store


@pytest.fixture(params=["sqlite", "memory"])
def stores(request, tmp_path):
    s = Stores(request.param, tmp_path)
    yield s
    for store in reversed(s.open):
        store.close()


VALUES = {
    "num": {"score": 4.5, "n": 3, "flag": True, "none": None},
    "text": {"reply": "naïve — ünïcode ✓", "tags": ["a", "b"]},
    "nested": {"d": {"x": [1, 2.5, None]}},
    "f16": {"emb": np.arange(12, dtype=np.float16).reshape(3, 4) / 7},
    "i64": {"ids": np.array([2**40, -1, 0], dtype=np.int64)},
    "f32": {"grad": np.linspace(-1, 1, 5, dtype=np.float32), "scalar": np.float32(0.25)},
}


def same(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, np.generic):
        return a.item() == b
    return a == b


def test_values_round_trip_including_numpy_arrays(stores):
    s = stores.handle()
    s.register("n1", "op", "1", {"k": 1}, "")
    assert s.put_many("n1", VALUES.items()) == len(VALUES)
    got = stores.handle().get_many("n1", list(VALUES))  # another handle sees it
    assert got.keys() == VALUES.keys()
    assert all(same(VALUES[k], got[k]) for k in VALUES)


def test_absent_ids_are_not_returned_and_not_counted(stores):
    s = stores.handle()
    s.put_many("n1", [("a", {"v": 1}), ("b", {"v": 2})])
    assert s.get_many("n1", ["a", "x", "a", "y"]) == {"a": {"v": 1}}
    assert s.get_many("n2", ["a"]) == {}
    assert s.count("n1", ["a", "b", "x", "b"]) == 2


def test_a_re_put_replaces(stores):
    s = stores.handle()
    s.put_many("n1", [("a", {"v": 1})])
    s.put_many("n1", [("a", {"v": 2})])
    assert s.get_many("n1", ["a"]) == {"a": {"v": 2}}
    assert s.count("n1", ["a"]) == 1


def test_a_batch_is_stored_whole_or_not_at_all(stores):
    s = stores.handle()
    with pytest.raises(TypeError):
        s.put_many("n1", [("a", {"v": 1}), ("b", {"v": object()})])
    assert s.get_many("n1", ["a", "b"]) == {}
    many = [(f"s{i}", {"v": i}) for i in range(1234)]  # more than one SQL chunk
    assert s.put_many("n1", many) == 1234
    assert s.count("n1", [k for k, _ in many]) == 1234


def test_ls_and_gc_work_on_whole_nodes(stores):
    s = stores.handle()
    s.register("old", "length", "1", {}, "")
    s.put_many("old", [("a", {"v": 1}), ("b", {"v": 2})])
    stores.clock.t += 10 * 86400
    s.register("new", "ifd", "2", {"x": 1}, "m")
    s.put_many("new", [("a", {"v": 3})])
    ls = {r["node"]: r for r in s.ls()}
    assert (ls["old"]["samples"], ls["new"]["samples"], ls["new"]["op"], ls["new"]["model"]) == (2, 1, "ifd", "m")
    assert [r["node"] for r in s.ls()] == ["new", "old"]  # most recently used first
    assert ls["old"]["bytes"] > 0
    assert s.gc(older_than_days=5, keep=["old"]) == 0
    assert s.gc(older_than_days=5) == 2
    assert [r["node"] for r in s.ls()] == ["new"]
    assert s.get_many("new", ["a"]) == {"a": {"v": 3}}
    assert s.gc(ops=["ifd"]) == 1
    assert s.ls() == []


def test_a_claim_is_held_until_stored_or_released(stores):
    a, b = stores.handle(), stores.handle()
    assert a.claim("n", ["1", "2", "3"]) == ["1", "2", "3"]
    assert a.claim("n", ["1"]) == ["1"]  # its own claim is its own
    assert b.claim("n", ["1", "2", "3", "4"]) == ["4"]
    a.put_many("n", [("1", {"v": 1})])
    a.release("n", ["2"])
    assert b.claim("n", ["1", "2", "3"]) == ["2"]  # 1 is stored, 3 still held
    b.release("n", ["2", "4"])


def test_a_claim_lapses_at_its_expiry_unless_renewed(stores):
    a, b = stores.handle(), stores.handle()
    a.owner = "elsewhere.example:4242:aa"  # another host: only the lease can tell it is gone
    assert a.claim("n", ["1", "2"]) == ["1", "2"]
    stores.clock.t += TTL * 0.9
    assert a.renew() == 2
    stores.clock.t += TTL * 0.9
    assert b.claim("n", ["1", "2"]) == []
    stores.clock.t += TTL * 0.2
    assert b.claim("n", ["1", "2"]) == ["1", "2"]


def test_a_claim_of_a_dead_process_on_this_host_is_taken_at_once(stores):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    a, b = stores.handle(), stores.handle()
    a.owner = f"{HOST}:{int(dead.stdout)}:dead"
    assert a.claim("n", ["1"]) == ["1"]
    assert b.claim("n", ["1"]) == ["1"]


def test_closing_a_handle_ends_its_claims(stores):
    a, b = stores.handle(), stores.handle()
    assert a.claim("n", ["1"]) == ["1"]
    a.close()
    stores.open.remove(a)
    assert b.claim("n", ["1"]) == ["1"]


def test_a_read_only_handle_serves_stores_nothing_and_claims_everything(stores):
    w = stores.handle()
    w.register("n", "op", "1", {}, "")
    w.put_many("n", [("a", {"v": 1})])
    assert w.claim("n", ["b"]) == ["b"]
    r = stores.handle(readonly=True)
    assert r.readonly
    assert r.get_many("n", ["a", "b"]) == {"a": {"v": 1}}
    assert r.put_many("n", [("b", {"v": 2})]) == 0
    r.register("m", "op", "1", {}, "")
    assert r.claim("n", ["a", "b"]) == ["a", "b"]  # it cannot tell anyone, so it computes
    with pytest.raises(ReadOnlyStore):
        r.gc(ops=["op"])
    assert w.get_many("n", ["b"]) == {}
    assert [x["node"] for x in w.ls()] == ["n"]


def test_two_handles_sharing_ids_compute_each_once(stores):
    """One handle claims and holds; the other finds nothing to claim, waits, and collects."""
    a, b = stores.handle(), stores.handle()
    ids = [f"s{i}" for i in range(10)]
    b_waits, computed = threading.Event(), {"a": [], "b": []}

    def work(name, store):
        def run(mine):
            if name == "a":
                assert b_waits.wait(60), "b never waited"
            computed[name] += mine
            store.put_many("n", [(i, {"by": name}) for i in mine])
        return run

    got_b: dict = {}

    def b_sleep(_s):
        b_waits.set()
        threading.Event().wait(0.01)  # a poll interval; nothing is asserted on it

    started = threading.Event()
    orig_claim = a.claim

    def claim_then_signal(node, group):
        mine = orig_claim(node, group)
        started.set()
        return mine

    a.claim = claim_then_signal
    t = threading.Thread(target=share, args=(a, "n", ids, lambda i: [i], work("a", a), lambda g: None))
    t.start()
    assert started.wait(60)
    waited = share(b, "n", ids, lambda i: [i[:3], i[3:]], work("b", b), got_b.update, sleep=b_sleep)
    t.join(60)
    assert sorted(computed["a"]) == sorted(ids) and computed["b"] == []
    assert waited == 10 and got_b == {i: {"by": "a"} for i in ids}


def test_a_released_claim_is_computed_by_the_waiting_handle(stores):
    """A holder that fails releases; the waiter then claims and computes those samples itself."""
    a, b = stores.handle(), stores.handle()
    assert a.claim("n", ["1", "2"]) == ["1", "2"]
    computed: list = []

    def b_sleep(_s):
        a.put_many("n", [("1", {"by": "a"})])
        a.release("n", ["2"])

    got: dict = {}
    waited = share(b, "n", ["1", "2"], lambda i: [i], lambda m: (computed.extend(m), b.put_many(
        "n", [(x, {"by": "b"}) for x in m])), got.update, sleep=b_sleep)
    assert (waited, computed, got) == (1, ["2"], {"1": {"by": "a"}})


def test_run_sample_op_on_two_handles_computes_each_sample_once(tmp_path):
    """Two runs of one model step on one cache file: the second waits for the first's batch."""
    import logging

    from dslrun.core.columns import FLOAT
    from dslrun.core.cost import Resource
    from dslrun.core.params import Params as NoParams
    from dslrun.operators.base import SampleOperator
    from dslrun.runtime.data.pool_files import read_pool
    from dslrun.runtime.execution.context import RunContext
    from dslrun.runtime.execution.sample_runner import run_sample_op
    from testkit.cli import alpaca, write_pool

    entered, gate, calls = threading.Event(), threading.Event(), []

    class Gated(SampleOperator):
        name = "gated-test"
        resource = Resource.MODEL
        Params = NoParams
        produces = {"g": FLOAT}

        def compute(self, batch, ctx):
            entered.set()
            assert gate.wait(60)
            calls.extend(batch.ids)
            return [{"g": float(len(sid))} for sid in batch.ids]

    write_pool(tmp_path / "p.json", alpaca(6))
    table = read_pool(tmp_path / "p.json").table
    a, b = (SqliteStore(tmp_path / "scores.sqlite") for _ in range(2))
    ctx_a, ctx_b = (RunContext(out_dir=tmp_path, spec_dir=tmp_path, cache=s, node="g") for s in (a, b))
    b_waits = threading.Event()

    class Seen(logging.Handler):
        def emit(self, record):
            if "another run sharing the cache is computing" in record.getMessage():
                b_waits.set()

    handler, logger = Seen(), logging.getLogger("dslrun")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    out: dict = {}
    try:
        t = threading.Thread(target=lambda: out.setdefault("a", run_sample_op(Gated(NoParams()), table, ctx_a)))
        t.start()
        assert entered.wait(60)
        tb = threading.Thread(target=lambda: out.setdefault("b", run_sample_op(Gated(NoParams()), table, ctx_b)))
        tb.start()
        assert b_waits.wait(60)
        gate.set()
        t.join(60)
        tb.join(60)
    finally:
        gate.set()
        logger.removeHandler(handler)
        logger.setLevel(level)
        a.close()
        b.close()
    assert sorted(calls) == sorted(table.ids.tolist())
    assert np.array_equal(out["a"].column("g"), out["b"].column("g"))
    assert ctx_a.stats.computed == 6 and ctx_b.stats.computed == 0
    assert any("6 samples were computed by another run" in n for n in ctx_b.stats.notes)


def test_a_store_without_a_file_keeps_artifacts_where_a_run_without_a_cache_does(tmp_path):
    # cache_root read the file's folder and failed on a store in memory (path None).
    from dslrun.runtime.execution.context import RunContext

    assert RunContext(tmp_path / "out", tmp_path, MemoryStore()).cache_root == tmp_path / "out" / ".dslrun"
    on_disk = SqliteStore(tmp_path / "c" / "scores.sqlite")
    assert RunContext(tmp_path / "out", tmp_path, on_disk).cache_root == tmp_path / "c"
    on_disk.close()
