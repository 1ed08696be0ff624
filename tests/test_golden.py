"""Golden pairs: spec → error text, and spec → plan text (see testkit/golden.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dslrun.core.errors import ErrorList
from dslrun.dsl.compile import compile_spec
from dslrun.dsl.load import load_spec
from dslrun.dsl.trust import Trust
from dslrun.runtime.cache.sqlite import ScoreCache
from dslrun.runtime.execution.context import RunContext
from dslrun.runtime.execution.planner import dry_run, render
from testkit import golden

# The fixtures read the recipes' sample pool, as a user would with --allow-path specs/data.
SHARED_DATA = Trust(allow_paths=(Path(__file__).resolve().parents[1] / "specs" / "data",))


@pytest.mark.parametrize("spec", golden.cases("errors"), ids=lambda p: p.name)
def test_bad_spec_error_text(spec, monkeypatch):
    monkeypatch.chdir(spec.parent)
    with pytest.raises(ErrorList) as e:
        compile_spec(load_spec(spec.name), trust=SHARED_DATA)
    golden.check(spec, str(e.value) + "\n")


@pytest.mark.parametrize("spec", golden.cases("plans"), ids=lambda p: p.name)
def test_plan_text(spec, monkeypatch, tmp_path):
    monkeypatch.chdir(spec.parent)
    plan = compile_spec(load_spec(spec.name), trust=SHARED_DATA)
    ctx = RunContext(out_dir=tmp_path, spec_dir=spec.parent, cache=ScoreCache(tmp_path / "c.sqlite"))
    golden.check(spec, render(plan, dry_run(plan, ctx), "<cache>") + "\n")
    assert not any(tmp_path.glob("*.json")), "plan must not write outputs"
