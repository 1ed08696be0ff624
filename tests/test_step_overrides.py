"""``--set STEP.PARAM=VALUE``: any step argument from the command line, checked like the spec's own."""

from __future__ import annotations

import json

import pytest

from dslrun.core.errors import ErrorList
from dslrun.dsl.compile import compile_spec
from dslrun.dsl.load import load_spec
from dslrun.runtime.cli import parse_overrides
from testkit.cli import SPECS, alpaca, dslrun_here, write_pool


def compiled(spec: str, *sets: str, cwd=None):
    return compile_spec(load_spec(str(SPECS / spec)), parse_overrides(list(sets)), cwd=cwd)


def errors_of(spec: str, *sets: str) -> str:
    with pytest.raises(ErrorList) as e:
        compiled(spec, *sets)
    return str(e.value)


def test_a_step_argument_the_spec_does_not_set_is_reachable():
    plan = compiled("alpagasus.sel", "rated.concurrency=4", "rated.timeout=300")
    params = plan.nodes["rated"].op.params
    assert (params.concurrency, params.timeout) == (4, 300)


def test_a_step_override_wins_over_the_spec_argument_and_its_parameter():
    plan = compiled("longest.sel", "k=10", "longest.top=3")
    assert plan.nodes["longest"].op.params.top == 3


def test_expression_and_step_fields_are_read_as_the_spec_reads_them():
    plan = compiled("ifd.sel", "cherry.where=ifd < 0.9 and is_null(ifd_reason)", "cherry.order=score")
    where = plan.nodes["cherry"].op.params.where
    assert type(where).__name__ == "Binary"  # an expression, not the string
    assert plan.nodes["cherry"].op.params.order == "score"


def test_a_value_followed_by_more_text_is_a_spec_error_not_a_crash():
    # `1 len(output)` used to parse as two statements and end in an internal error (ValueError).
    assert "expected int like the default" in errors_of("longest.sel", "k=1 len(output)")
    text = errors_of("longest.sel", "longest.by=1 len(output)")
    assert "not an expression (unexpected `len` after a complete value)" in text


def test_unknown_step_has_a_suggestion():
    text = errors_of("alpagasus.sel", "rate.concurrency=4")
    assert "the spec has no step `rate`" in text and "did you mean `rated`?" in text


def test_unknown_parameter_has_a_suggestion():
    text = errors_of("alpagasus.sel", "rated.concurency=4")
    assert "`rated` (judge-score) has no parameter `concurency`" in text and "did you mean `concurrency`?" in text


def test_a_bad_value_is_checked_by_the_operator():
    text = errors_of("alpagasus.sel", "rated.concurrency=0")
    assert "concurrency" in text and "greater than or equal to 1" in text
    assert "expected" in errors_of("alpagasus.sel", "rated.concurrency=many").lower() or "integer" in \
        errors_of("alpagasus.sel", "rated.concurrency=many")


def test_a_path_from_the_command_line_is_relative_to_the_current_folder(tmp_path):
    write_pool(tmp_path / "mine.json", alpaca(5))
    plan = compiled("longest.sel", "pool.path=mine.json", cwd=tmp_path)
    assert plan.nodes["pool"].op.params.path == str(tmp_path / "mine.json")
    with pytest.raises(ErrorList, match="file not found: nothere.json"):
        compiled("longest.sel", "pool.path=nothere.json", cwd=tmp_path)


def test_the_run_uses_it_and_the_lock_file_records_it(tmp_path):
    r = dslrun_here(str(SPECS / "longest.sel"), "--set", "longest.top=7", "--set", "pool.limit=30", "--out", "o", "-q",
               cwd=tmp_path, check=True)
    assert r.returncode == 0
    assert len(json.loads((tmp_path / "o" / "selected.json").read_text())) == 7
    lock = json.loads((tmp_path / "o" / "dslrun.lock.json").read_text())
    assert lock["spec"]["overrides"] == {"longest.top": 7, "pool.limit": 30}  # typed, as the step got them
    rank = next(n for n in lock["nodes"] if n["name"] == "longest")
    assert rank["params"]["top"] == 7 and rank["rows_in"] == 30


def test_an_unknown_step_from_the_cli_is_a_spec_error_exit_2(tmp_path):
    r = dslrun_here(str(SPECS / "longest.sel"), "--set", "longst.top=7", "-q", cwd=tmp_path)
    assert r.returncode == 2 and "did you mean `longest`?" in r.stderr and "Traceback" not in r.stderr


def test_the_lock_file_records_a_command_line_pool_relative_to_where_the_run_started(tmp_path):
    write_pool(tmp_path / "mine.json", alpaca(12))
    dslrun_here(str(SPECS / "longest.sel"), "--set", "pool=mine.json", "--set", "k=3", "--out", "runs/o", "-q",
           cwd=tmp_path, check=True)
    lock = json.loads((tmp_path / "runs" / "o" / "dslrun.lock.json").read_text())
    assert lock["inputs"][0]["path"] == "mine.json" and lock["inputs"][0]["relative_to"] == "cwd"  # not ../../..
    assert next(n for n in lock["nodes"] if n["name"] == "pool")["params"]["path"] == "mine.json"
    dslrun_here(str(SPECS / "longest.sel"), "--set", "k=3", "--out", "runs/p", "-q", cwd=tmp_path, check=True)
    spec_own = json.loads((tmp_path / "runs" / "p" / "dslrun.lock.json").read_text())["inputs"][0]
    assert (spec_own["path"], spec_own["relative_to"]) == ("data/alpaca_random_1k.json", "spec")
