"""``dslrun plan`` counts one judge call per user turn with ``multi_turn: per_turn`` (DEITA on
ShareGPT), and leaves out the turns an interrupted run already cached."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dslrun.operators.llm.prompts import JUDGES
from testkit.cli import dslrun_here, write_pool
from testkit.openai_replies import request_prompt
from testkit.openai_server import OpenAITestServer

pytest.importorskip("openai")

KEY_ENV = "DSLRUN_PLAN_TURNS_KEY"


def conversation(i: int, turns: int) -> dict:
    msgs = []
    for t in range(turns):
        msgs += [{"from": "human", "value": f"Question {t} of conversation {i}?"},
                 {"from": "gpt", "value": f"Answer {t} of conversation {i}."}]
    return {"id": f"c{i}", "conversations": msgs}


def project(tmp_path: Path, pool: list[dict], multi_turn: str = "per_turn") -> None:
    write_pool(tmp_path / "pool.json", pool)
    (tmp_path / "spec.sel").write_text(
        'param base_url = "http://127.0.0.1:1/v1"\n'
        'pool = load(path: "pool.json")\n'
        'c = judge-score(pool, template: deita-complexity, model: test-model, base_url: $base_url, '
        f'api_key_env: {KEY_ENV}, max_attempts: 1, multi_turn: {multi_turn})\n'
        'save(c)\n')


def plan_row(tmp_path: Path, srv: OpenAITestServer) -> tuple[list[str], str]:
    proc = dslrun_here("plan", "spec.sel", "--set", f"base_url={srv.base_url}", cwd=tmp_path, check=True)
    line = next(line for line in proc.stdout.splitlines() if "judge-score" in line)
    return line.split(), proc.stdout


def test_plan_counts_one_call_per_user_turn(tmp_path):
    pool = [conversation(0, 3), conversation(1, 2), conversation(2, 1)]
    project(tmp_path, pool)
    with OpenAITestServer() as srv:
        row, out = plan_row(tmp_path, srv)
        assert srv.total == 0
    # columns: # step op kind rows cached to-compute passes calls tokens
    assert row[5:9] == ["0/3", "3", "0", "6"], out
    n_in, n_out = map(int, row[9].split("+"))
    assert n_out == 6 * JUDGES["deita-complexity"].max_tokens  # each turn's reply is bounded
    assert "to compute: 3 samples, 0 model forward passes, 6 API calls" in out
    project(tmp_path, pool, multi_turn="first")  # one call per sample, as before
    with OpenAITestServer() as srv:
        row, _ = plan_row(tmp_path, srv)
    assert row[8] == "3"
    assert int(row[9].split("+")[0]) < n_in  # the first turn's prompt only


def test_plan_leaves_out_turns_an_earlier_run_cached(tmp_path):
    """The turns the server refused (not cached) are the only calls left; the sample's other
    turns and the complete sample are not counted again."""
    project(tmp_path, [conversation(0, 4), conversation(1, 2)])

    def fault(request: dict, n: int) -> str | None:
        text = json.dumps(request_prompt(request))  # chat messages, or a raw completion prompt
        return "500" if "Question 1 of conversation 0" in text or "Question 2 of conversation 0" in text else None

    with OpenAITestServer(fault_fn=fault) as srv:
        dslrun_here("run", "spec.sel", "--set", f"base_url={srv.base_url}", "-q", cwd=tmp_path,
               env={KEY_ENV: "sk-test"}, check=True)
        assert srv.total == 6
    with OpenAITestServer() as srv:
        row, out = plan_row(tmp_path, srv)
        assert srv.total == 0
    assert row[5:9] == ["1/2", "1", "0", "2"], out
