"""One table of operator kinds: run and plan go through the same runners, and whole-table
steps run their per-sample work through ``ctx.run_cached``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from dslrun.core.columns import FLOAT
from dslrun.core.context import NodeStats
from dslrun.core.params import Params
from dslrun.operators.base import SampleOperator, TableOperator
from dslrun.operators.llm.base import LlmOperator
from dslrun.runtime.cache.sqlite import ScoreCache
from dslrun.runtime.data.table import Table
from dslrun.runtime.execution.context import RunContext
from dslrun.runtime.execution.dispatch import kind_of
from testkit.cli import dslrun, write_pool
from testkit.openai_server import OpenAITestServer

KEY_ENV = "DSLRUN_DISPATCH_TEST_KEY"


def test_the_three_kinds_are_siblings_and_each_has_one_runner():
    from dslrun.operators import registry

    registry._load()
    kinds = {name: kind_of(cls.__new__(cls)) for name, cls in registry._REGISTRY.items()}
    assert kinds["judge-score"] == kinds["tag"] == "llm"
    assert kinds["ifd"] == kinds["perplexity"] == "sample"
    assert kinds["rank"] == kinds["gradient-sim"] == kinds["length"] == "table"
    assert not issubclass(LlmOperator, SampleOperator) and not issubclass(SampleOperator, LlmOperator)


def test_params_type_comes_from_the_generic_argument():
    from dslrun.operators.ifd import Ifd, IfdParams
    from dslrun.operators.judge_score import JudgeParams, JudgeScore

    assert Ifd.params_type is IfdParams and JudgeScore.params_type is JudgeParams


def test_a_subclass_of_a_concrete_operator_keeps_the_params_type_it_sets():
    # it inherited its parent's generic bases and lost its own parameters (the Ray kill test's plugin)
    from dslrun.operators.perplexity import Perplexity, PerplexityParams

    class MoreParams(PerplexityParams):
        delay: float = 0.0

    class Slower(Perplexity):
        name = "slower-perplexity-test"
        params_type = MoreParams

    assert Slower.params_type is MoreParams and Perplexity.params_type is PerplexityParams


def tags_reply(request: dict) -> str:
    text = request["messages"][-1]["content"]
    n = int(re.search(r"Task (\d+)", text).group(1))
    tags = [{"tag": f"Topic-{j}", "explanation": "x"} for j in range(n % 5)]
    return "Here:\n" + json.dumps(tags)


SPEC = """
pool = load(path: "pool.json")
tagged = tag(pool, model: "test-model", base_url: $url, api_key_env: "KEYVAR")
many = filter(tagged, where: n_tags >= 3)
save(many)
param url = "x"
""".replace("KEYVAR", KEY_ENV)


def test_plan_after_a_run_of_an_llm_step_gives_the_rows_the_run_kept(tmp_path):
    """Before: the planner ran `tag` as a plain sample operator and never called `finish`, so
    after a run that kept 8 rows `plan` printed the filter's rows as an exact 0."""
    pytest.importorskip("openai")
    write_pool(tmp_path / "pool.json", [{"instruction": f"Task {i}", "input": "", "output": f"done {i}"}
                                        for i in range(20)])
    (tmp_path / "spec.sel").write_text(SPEC)
    env = {KEY_ENV: "sk-test"}
    with OpenAITestServer(reply=tags_reply) as srv:
        url = ["--set", f"url={srv.base_url}"]
        dslrun("run", "spec.sel", *url, "-q", "--out", "out", cwd=tmp_path, env=env, check=True)
        kept = len(json.loads((tmp_path / "out" / "selected.json").read_text()))
        assert kept == sum(1 for i in range(20) if i % 5 >= 3) == 8
        plan = dslrun("plan", "spec.sel", *url, cwd=tmp_path, env=env, check=True).stdout
        assert srv.total == 20  # the plan sent nothing
    row = next(line.split() for line in plan.splitlines() if line.split()[1:3] == ["many", "filter"])
    assert row[4] == str(kept), plan


class AddParams(Params):
    k: float = 1.0


class Add(SampleOperator[AddParams]):
    name = "test-add"
    produces = {"added": FLOAT}
    calls: list[int] = []

    def compute(self, batch, ctx):
        Add.calls.append(len(batch))
        return [{"added": float(len(s)) + self.params.k} for s in batch.column("output")]


def table(n: int) -> Table:
    return Table({"id": np.array([f"s{i}" for i in range(n)], dtype=object),
                  "output": np.array(["x" * i for i in range(n)], dtype=object)})


def test_run_cached_adds_statistics_across_calls_and_prepares_only_when_computing(tmp_path):
    """Before: run_sample_op assigned the step's cache statistics, so a step that ran two
    per-sample operators (necessity) reported only the second."""
    ctx = RunContext(tmp_path, tmp_path, ScoreCache(tmp_path / "c.sqlite"), "step", NodeStats())
    prepared: list[int] = []
    ctx.run_cached(Add(AddParams(k=1)), table(4), prepare=lambda: prepared.append(1))
    out = ctx.run_cached(Add(AddParams(k=2)), table(6), prepare=lambda: prepared.append(2))
    assert list(out.column("added")) == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    assert (ctx.stats.cache_misses, ctx.stats.computed, ctx.stats.cache_hits) == (10, 10, 0)
    assert prepared == [1, 2]
    ctx.run_cached(Add(AddParams(k=2)), table(6), prepare=lambda: prepared.append(3))
    assert prepared == [1, 2] and ctx.stats.cache_hits == 6  # all cached: no shared work
    assert ctx.count_cached(Add(AddParams(k=2)), table(8)) == (8, 6)


def test_a_dry_run_computes_no_model_sample_and_says_how_many_are_pending(tmp_path):
    class Model(Add):
        name = "test-model-add"
        resource = Add.resource.__class__.MODEL

    ctx = RunContext(tmp_path, tmp_path, ScoreCache(tmp_path / "c.sqlite"), "step", NodeStats(), dry_run=True)
    Add.calls.clear()
    out = ctx.run_cached(Model(AddParams()), table(5))
    assert Add.calls == [] and ctx.stats.pending == 5 and "added" not in out
    cheap = ctx.run_cached(Add(AddParams()), table(5))  # cheap operators compute for real in a plan
    assert Add.calls and "added" in cheap


def test_no_operator_imports_the_runtime_execution_internals():
    root = Path(__file__).resolve().parents[1] / "operators"
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if re.search(r"dslrun\.runtime\.(execution|cache)\b", p.read_text())]
    assert offenders == []


def test_table_operators_declare_their_dry_run_cost_hook():
    assert TableOperator.dry_run_cost(TableOperator.__new__(TableOperator), [], None) is None
