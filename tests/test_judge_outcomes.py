"""Judge outcomes: declared scales, the run summary by outcome, endpoints that refuse every
call, and ``max_failed_fraction`` — whole runs of the real CLI against the test server."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from dslrun.operators.judge_score import JudgeParams
from dslrun.operators.llm.base import outcome_line, outcome_of
from dslrun.operators.llm.prompts import JUDGES, scale_reason
from testkit.cli import dslrun, dslrun_here, write_pool
from testkit.openai_server import OpenAITestServer

pytest.importorskip("openai")

KEY_ENV, SECRET = "DSLRUN_OUTCOME_TEST_KEY", "sk-outcome-test-3c9e1a7f5b2d4e60"

SPEC = """\
param base_url = "http://127.0.0.1:1/v1"
param threshold = 4.5
param mff = 0.5
pool = load(path: "pool.json")
rated = judge-score(pool, template: {template}, model: test-model, base_url: $base_url, api_key_env: {key},
                    timeout: 5, max_attempts: 2, concurrency: 4, max_failed_fraction: $mff)
kept = filter(rated, where: score >= $threshold)
save(kept)
"""


def project(tmp_path: Path, n: int, template: str = "alpagasus") -> Path:
    write_pool(tmp_path / "pool.json", [{"instruction": f"Task {i}", "input": "", "output": f"answer {i}"}
                                        for i in range(n)])
    (tmp_path / "spec.sel").write_text(SPEC.format(template=template, key=KEY_ENV))
    return tmp_path


def task_of(request: dict) -> int:
    text = request["messages"][-1]["content"] if "messages" in request else request["prompt"]  # chat or completion
    return int(text.split("Task ")[1].split()[0])


def run(tmp_path: Path, srv: OpenAITestServer, *sets: str, here: bool = True):
    """A run in this process (dslrun_here), or with ``here=False`` in a process of its own."""
    args = ["run", "spec.sel", "-q", "--set", f"base_url={srv.base_url}"]
    for s in sets:
        args += ["--set", s]
    return (dslrun_here if here else dslrun)(*args, cwd=tmp_path, env={KEY_ENV: SECRET})


def scores(tmp_path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(tmp_path / "out" / "spec" / "selected.scores.parquet").to_pylist()


# ----------------------------------------------------------------------------- scales
@pytest.mark.parametrize("value,reason", [
    (99.0, "out of scale: 99 (scale 0-5)"), (math.inf, "out of scale: inf (scale 0-5)"),
    (-math.inf, "out of scale: -inf (scale 0-5)"), (math.nan, "out of scale: nan (scale 0-5)"),
    (1e308, "out of scale: 1e+308 (scale 0-5)"), (-0.5, "out of scale: -0.5 (scale 0-5)"),
    (0.0, None), (5.0, None), (2.5, None),
])
def test_alpagasus_scale(value, reason):
    assert scale_reason(value, JUDGES["alpagasus"].scale) == reason


def test_every_named_template_declares_its_scale():
    assert {n: j.scale for n, j in JUDGES.items()} == {
        "alpagasus": (0, 5), "alpagasus-helpfulness": (0, 5), "deita-complexity": (1, 6), "deita-quality": (1, 6)}
    assert scale_reason(1e12, None) is None and scale_reason(math.nan, None) == "out of scale: nan (not a finite number)"


def test_scale_is_for_custom_templates_only():
    with pytest.raises(ValidationError, match="for template: custom"):
        JudgeParams(template="alpagasus", scale=(0, 10))
    with pytest.raises(ValidationError, match="low <= high"):
        JudgeParams(template="custom", template_file="t.txt", scale=(10, 0))


def test_outcomes_from_reasons():
    assert [outcome_of(r) for r in (None, "unparsable reply: x", "out of scale: 99 (scale 0-5)",
                                    "failed: timeout (no reply)", "not run: budget")] == [
        "ok", "unparsable", "out of scale", "failed: timeout", "not run: budget"]
    assert outcome_line({"ok": 3, "out of scale": 2, "failed: timeout": 1, "failed: server_error": 2}) == (
        "8 samples: 3 ok, 0 unparsable, 2 out of scale, 3 failed (server_error=2, timeout=1)")


REPLIES = ["inf", "1e308", "99", "NaN", "-inf", "4.6", "5", "0", "-0.5", "great, really"]


def test_values_off_the_scale_are_not_scores_and_their_replies_stay_cached(tmp_path):
    project(tmp_path, len(REPLIES))
    with OpenAITestServer(reply=lambda req: REPLIES[task_of(req)] + "\nbecause") as srv:
        proc = run(tmp_path, srv, "threshold=-100")
        assert proc.returncode == 0, proc.stderr
        rows = {r["row"]: r for r in scores(tmp_path)}
        assert [rows[i]["score_reason"] for i in range(5)] == [
            "out of scale: inf (scale 0-5)", "out of scale: 1e+308 (scale 0-5)", "out of scale: 99 (scale 0-5)",
            "out of scale: nan (scale 0-5)", "out of scale: -inf (scale 0-5)"]
        assert rows[8]["score_reason"] == "out of scale: -0.5 (scale 0-5)"
        assert rows[9]["score_reason"].startswith("unparsable reply")
        assert all(rows[i]["score"] == -1.0 for i in (0, 1, 2, 3, 4, 8, 9))  # AlpaGasus' value for "not a score"
        assert [rows[i]["score"] for i in (5, 6, 7)] == [4.6, 5.0, 0.0]
        assert "outcomes: 10 samples: 3 ok, 1 unparsable, 6 out of scale, 0 failed" in proc.stdout
        # the raw replies are cached: a re-run with the published threshold pays for nothing
        db = sqlite3.connect(tmp_path / ".dslrun" / "scores.sqlite")
        raws = {json.loads(v)["raw"] for (v,) in db.execute("SELECT value FROM scores")}
        db.close()
        assert {f"{r}\nbecause" for r in REPLIES} <= raws
        again = run(tmp_path, srv)
        assert srv.total == len(REPLIES) and again.returncode == 0
    assert sorted(r["row"] for r in scores(tmp_path)) == [5, 6]  # 99, inf and 1e308 are no longer selected


def test_deita_with_a_non_finite_logprob_is_out_of_scale(tmp_path):
    project(tmp_path, 2, template="deita-complexity")
    spec = tmp_path / "spec.sel"
    spec.write_text(spec.read_text().replace("save(kept)", "save(rated)"))  # NaN fails every filter

    def top(request: dict, first: str) -> dict[str, float]:
        return {"3": math.nan, "4": -1.0} if task_of(request) == 0 else {"3": -0.1}

    with OpenAITestServer(reply=lambda req: "3", top_logprobs=top) as srv:
        proc = run(tmp_path, srv, "threshold=-100")
    rows = {r["row"]: r for r in scores(tmp_path)}
    assert rows[0]["score_reason"] == "out of scale: nan (scale 1-6)" and math.isnan(rows[0]["score"])
    assert rows[1] == {**rows[1], "score": 3.0, "score_reason": None}
    assert "1 ok, 0 unparsable, 1 out of scale" in proc.stdout


# ----------------------------------------------------------------------------- refused endpoints
def test_a_refused_key_stops_the_step_at_once(tmp_path):
    project(tmp_path, 30)
    with OpenAITestServer(api_key="the-right-key") as srv:  # echoes the key it got in its 401
        proc = run(tmp_path, srv, here=False)  # all the process writes is scanned
        refused = srv.stats().outcomes["401"]
    assert proc.returncode == 1
    assert 1 <= refused <= 4  # at most the calls already in flight (concurrency 4), never 30 or retries
    assert f"the endpoint {srv.base_url} refused the API key in ${KEY_ENV} (HTTP 401)" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert not (tmp_path / "out" / "spec" / "selected.json").exists()


def test_an_unknown_model_stops_the_step_at_once(tmp_path):
    project(tmp_path, 30)
    with OpenAITestServer(models=["another-model"], strict_models=True) as srv:
        proc = run(tmp_path, srv)
        not_found = srv.stats().outcomes["404"]
    assert proc.returncode == 1 and 1 <= not_found <= 4
    assert f"the endpoint {srv.base_url} answered HTTP 404 Not Found for model `test-model`" in proc.stderr
    assert "does not exist" in proc.stderr


# ----------------------------------------------------------------------------- max_failed_fraction
def fails_below(k: int):
    return lambda request, n: "500" if task_of(request) < k else None


def test_too_many_failed_samples_fail_the_run_after_saving(tmp_path):
    project(tmp_path, 10)
    with OpenAITestServer(fault_fn=fails_below(6)) as srv:
        proc = run(tmp_path, srv, "threshold=-100")
    assert proc.returncode == 1
    assert "step `rated`: 6 of 10 samples failed (server_error=6), more than max_failed_fraction 0.5" in proc.stderr
    assert "outcomes: 10 samples: 4 ok, 0 unparsable, 0 out of scale, 6 failed (server_error=6)" in proc.stdout
    saved = scores(tmp_path)  # saved what it got (a failed sample's NaN score fails the filter)
    assert sorted(r["row"] for r in saved) == [6, 7, 8, 9] and all(r["score_reason"] is None for r in saved)


@pytest.mark.parametrize("failing,mff", [(5, "0.5"), (6, "0.6"), (10, "1")])
def test_failed_samples_up_to_max_failed_fraction_pass(tmp_path, failing, mff):
    project(tmp_path, 10)
    with OpenAITestServer(fault_fn=fails_below(failing)) as srv:
        proc = run(tmp_path, srv, "threshold=-100", f"mff={mff}")
    assert proc.returncode == 0, proc.stderr
    assert f"{failing} failed (server_error={failing})" in proc.stdout


# ----------------------------------------------------------------------------- OPENAI_BASE_URL
def test_openai_base_url_is_used_when_the_spec_names_no_base_url(tmp_path):
    project(tmp_path, 3)
    spec = tmp_path / "spec.sel"
    spec.write_text(spec.read_text().replace("base_url: $base_url, ", ""))
    with OpenAITestServer() as srv:
        env = {KEY_ENV: SECRET, "OPENAI_BASE_URL": srv.base_url}
        plan = dslrun_here("plan", "spec.sel", cwd=tmp_path, env=env, check=True)
        assert srv.total == 0
        assert f"endpoint of rated: {srv.base_url} ($OPENAI_BASE_URL), model test-model, key in ${KEY_ENV}" \
            in plan.stdout
        proc = dslrun_here("run", "spec.sel", "-q", cwd=tmp_path, env=env, check=True)
        assert srv.total == 3 and "3 ok" in proc.stdout
    # a base_url in the spec wins; without either, OpenAI's own endpoint
    named = dslrun_here("plan", "spec.sel", cwd=tmp_path, env={"OPENAI_BASE_URL": ""}, check=True)
    assert "endpoint of rated: https://api.openai.com/v1 (OpenAI's default)" in named.stdout
    spec.write_text(spec.read_text().replace("model: test-model,", 'model: test-model, base_url: "http://h:1/v1",'))
    named = dslrun_here("plan", "spec.sel", cwd=tmp_path, env={"OPENAI_BASE_URL": srv.base_url}, check=True)
    assert "endpoint of rated: http://h:1/v1 (base_url)" in named.stdout
