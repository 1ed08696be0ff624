"""End to end: the real CLI in a temporary project, on real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from testkit.cli import POOL, SPECS, alpaca, dslrun, write_pool

PLUGIN_ENV = {"DSLRUN_PLUGINS": "testkit.slow_ops", "PYTHONPATH": str(Path(__file__).parent)}


def summary_row(stdout: str, step: str) -> list[str]:
    for line in stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == step:
            return parts
    raise AssertionError(f"no summary row for {step}:\n{stdout}")


def test_longest_runs_and_a_threshold_change_recomputes_nothing(tmp_path):
    out = tmp_path / "out"
    first = dslrun(str(SPECS / "longest.sel"), "--set", "k=100", "--out", str(out), "-q", cwd=tmp_path, check=True)
    assert summary_row(first.stdout, "lengths")[4:6] == ["-", "-"]  # counted whole-table: no cache rows
    selected = json.loads((out / "selected.json").read_text())
    assert len(selected) == 100
    pool = json.loads(POOL.read_text())
    lengths = sorted((len(r["output"]) for r in pool), reverse=True)
    assert [len(r["output"]) for r in selected] == lengths[:100]  # longest first
    assert set(selected[0]) == {"instruction", "input", "output"}  # the pool's own schema

    second = dslrun(str(SPECS / "longest.sel"), "--set", "k=50", "--out", str(out), "-q", cwd=tmp_path, check=True)
    assert summary_row(second.stdout, "lengths")[4:6] == ["-", "-"]
    assert json.loads((out / "selected.json").read_text()) == selected[:50]

    scores = pq.read_table(out / "selected.scores.parquet").to_pylist()
    assert len(scores) == 50 and {"id", "row", "output_chars", "total_words"} <= set(scores[0])
    lock = json.loads((out / "dslrun.lock.json").read_text())
    assert lock["spec"]["overrides"] == {"k": 50}
    assert lock["inputs"][0]["sha256"] and lock["inputs"][0]["path"].endswith("alpaca_random_1k.json")
    rank = next(n for n in lock["nodes"] if n["name"] == "longest")
    assert (rank["rows_in"], rank["rows_out"], rank["dropped"]) == (1000, 50, 950)


def test_growing_pool_scores_only_new_samples(tmp_path):
    spec = tmp_path / "s.sel"
    spec.write_text('param pool = "p.json"\np = load(path: $pool)\nl = slow-score(p, delay: 0)\nsave(l)\n')
    write_pool(tmp_path / "p.json", alpaca(30))
    dslrun(str(spec), "-q", cwd=tmp_path, env=PLUGIN_ENV, check=True)
    write_pool(tmp_path / "p.json", alpaca(45))
    r = dslrun(str(spec), "-q", cwd=tmp_path, env=PLUGIN_ENV, check=True)
    assert summary_row(r.stdout, "l")[4:6] == ["30", "15"]


def test_random_and_yaml_twin_select_the_same(tmp_path):
    a = dslrun(str(SPECS / "random.sel"), "--set", "k=10", "--out", "a", "-q", cwd=tmp_path, check=True)
    b = dslrun(str(SPECS / "random.yaml"), "--set", "k=10", "--out", "b", "-q", cwd=tmp_path, check=True)
    assert a.returncode == b.returncode == 0
    sa, sb = (json.loads((tmp_path / d / "selected.json").read_text()) for d in "ab")
    assert sa == sb and len(sa) == 10
    dslrun(str(SPECS / "random.sel"), "--set", "k=10", "--set", "seed=1", "--out", "c", "-q", cwd=tmp_path, check=True)
    assert json.loads((tmp_path / "c" / "selected.json").read_text()) != sa


def test_limit_and_pool_override_from_the_command_line(tmp_path):
    write_pool(tmp_path / "mine.jsonl", alpaca(40), "jsonl")
    dslrun(str(SPECS / "longest.sel"), "--set", "pool=mine.jsonl", "--set", "limit=25", "--set", "k=5",
           "--out", "o", "-q", cwd=tmp_path, check=True)
    lines = (tmp_path / "o" / "selected.jsonl").read_text().splitlines()
    assert len(lines) == 5  # written as JSONL, like the input


def test_exit_codes(tmp_path):
    bad = tmp_path / "bad.sel"
    bad.write_text("x = nope()\n")
    assert dslrun(str(bad), cwd=tmp_path).returncode == 2
    assert dslrun("check", str(bad), cwd=tmp_path).returncode == 2
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    spec = tmp_path / "s.sel"
    spec.write_text('p = load(path: "broken.json")\nsave(p)\n')
    r = dslrun(str(spec), "-q", cwd=tmp_path)
    assert r.returncode == 2 and "s.sel:1:5" in r.stderr and "invalid JSON" in r.stderr  # caught before running
    write_pool(tmp_path / "ok.json", alpaca(3))
    spec.write_text('p = load(path: "ok.json")\nd = derive(p, column: "x", expr: 1 / (n_turns - 1))\nsave(d)\n')
    r = dslrun(str(spec), "-q", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "step `d` (derive) failed" in r.stderr and "division by zero in `1 / (n_turns - 1)`: 3 rows" in r.stderr


def test_malformed_rows_are_quarantined_and_the_run_goes_on(tmp_path):
    good = alpaca(5)
    rows = [json.dumps(r) for r in good]
    rows.insert(1, json.dumps({"instruction": "no output"}))
    rows.insert(2, json.dumps({"instruction": "x", "output": "   "}))
    rows.insert(3, json.dumps({"instruction": 3, "output": "y"}))
    rows.insert(4, "{not json")
    data = ("\n".join(rows) + "\n").encode() + b'{"instruction": "bad \xff bytes", "output": "z"}\n'
    (tmp_path / "p.jsonl").write_bytes(data)
    spec = tmp_path / "s.sel"
    spec.write_text('p = load(path: "p.jsonl")\nsave(p)\n')
    r = dslrun(str(spec), "-q", "--out", "o", cwd=tmp_path, check=True)
    assert "5 malformed rows quarantined" in r.stdout
    q = [json.loads(line) for line in (tmp_path / "o" / "quarantine" / "p.jsonl").read_text().splitlines()]
    reasons = [x["reason"] for x in q]
    assert reasons[0] == "missing field `output`"
    assert reasons[1] == "empty output"
    assert reasons[2] == "field `instruction` is a int, not a string"
    assert reasons[3].startswith("invalid JSON")
    assert reasons[4].startswith("bad UTF-8")
    assert len((tmp_path / "o" / "selected.jsonl").read_text().splitlines()) == 5
    lock = json.loads((tmp_path / "o" / "dslrun.lock.json").read_text())
    assert lock["nodes"][0]["quarantined"] == 5


def test_multi_turn_pools_keep_their_schema(tmp_path):
    share = [{"id": "s1", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello there"},
                                            {"from": "human", "value": "more"}, {"from": "gpt", "value": "ok"}]},
             {"id": "s2", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": ""}]}]
    msgs = [{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a"},
                          {"role": "assistant", "content": "b c d"}]}]
    write_pool(tmp_path / "share.json", share)
    write_pool(tmp_path / "msgs.jsonl", msgs, "jsonl")
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(alpaca(4)), tmp_path / "p.parquet")
    for pool, n in (("share.json", 1), ("msgs.jsonl", 1), ("p.parquet", 4)):
        spec = tmp_path / "s.sel"
        spec.write_text(f'p = load(path: "{pool}")\nl = length(p)\nt = rank(l, by: n_turns + output_words)\nsave(t, path: "o/{pool}")\n')
        dslrun(str(spec), "-q", "--out", ".", cwd=tmp_path, check=True)
        out = tmp_path / "o" / pool
        records = pq.read_table(out).to_pylist() if pool.endswith("parquet") else (
            json.loads(out.read_text()) if pool.endswith(".json") else [json.loads(x) for x in out.read_text().splitlines()])
        assert len(records) == n
    assert json.loads((tmp_path / "o" / "share.json").read_text())[0] == share[0]  # untouched record


def test_sigkill_mid_run_resumes_to_the_same_output(tmp_path):
    write_pool(tmp_path / "p.json", alpaca(300))
    spec = tmp_path / "s.sel"
    spec.write_text('p = load(path: "p.json")\ns = slow-score(p, delay: 0.05)\nt = rank(s, by: slow_score, top: 50)\nsave(t)\n')
    log = tmp_path / "computed.log"
    env = {**os.environ, **PLUGIN_ENV, "SLOW_SCORE_LOG": str(log), "SLOW_SCORE_HOLD_AFTER": "100"}
    args = [sys.executable, "-m", "dslrun.runtime.cli", str(spec), "-q", "--batch-rows", "10", "--out", "o"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:  # the step holds once 100 are logged, so the kill lands mid-run (the deadline is a bound only)
        deadline = time.monotonic() + 120
        while not log.exists() or len(log.read_text().splitlines()) < 100:
            assert proc.poll() is None and time.monotonic() < deadline, "the run never reached 100 samples"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = len(log.read_text().splitlines())
    assert 100 <= before < 300, "the kill must land mid-run"
    assert not (tmp_path / "o" / "selected.json").exists()

    resumed = dslrun(str(spec), "-q", "--batch-rows", "10", "--out", "o", cwd=tmp_path,
                     env={**PLUGIN_ENV, "SLOW_SCORE_LOG": str(log)}, check=True)
    hits, misses = map(int, summary_row(resumed.stdout, "s")[4:6])
    assert hits + misses == 300 and hits >= before - 10  # only the batch in flight may be lost
    computed = log.read_text().splitlines()
    assert len(computed) <= 300 + 10 and set(computed) == set(computed)

    clean = dslrun(str(spec), "-q", "--out", "clean", "--cache-dir", "fresh", cwd=tmp_path,
                   env=PLUGIN_ENV, check=True)
    assert clean.returncode == 0
    assert (tmp_path / "o" / "selected.json").read_text() == (tmp_path / "clean" / "selected.json").read_text()


def test_cheap_steps_write_no_cache_rows(tmp_path):
    # issue 16: `length` wrote one cache row per sample (a million for a million-row pool)
    dslrun(str(SPECS / "longest.sel"), "--set", "limit=20", "-q", cwd=tmp_path, check=True)
    assert "0 nodes" in dslrun("cache", "ls", cwd=tmp_path, check=True).stdout


def test_cache_ls_and_gc(tmp_path):
    write_pool(tmp_path / "p.json", alpaca(20))
    (tmp_path / "s.sel").write_text('p = load(path: "p.json")\ns = slow-score(p, delay: 0)\nsave(s)\n')
    dslrun("s.sel", "-q", cwd=tmp_path, env=PLUGIN_ENV, check=True)
    ls = dslrun("cache", "ls", cwd=tmp_path, check=True).stdout
    assert "slow-score" in ls and "20 samples" in ls
    assert dslrun("cache", "gc", cwd=tmp_path).returncode == 2
    assert "deleted 20" in dslrun("cache", "gc", "--op", "slow-score", cwd=tmp_path, check=True).stdout
    assert "0 nodes" in dslrun("cache", "ls", cwd=tmp_path, check=True).stdout


def test_plan_graph_schema_fmt_commands(tmp_path):
    plan = dslrun("plan", str(SPECS / "longest.sel"), "--set", "limit=30", cwd=tmp_path, check=True).stdout
    assert "to compute: 0 samples, 0 model forward passes, 0 API calls" in plan  # length: counted, not cached
    assert "pool --> lengths" in dslrun("graph", str(SPECS / "longest.sel"), cwd=tmp_path, check=True).stdout
    assert "pool -> lengths;" in dslrun("graph", str(SPECS / "longest.sel"), "--format", "dot", cwd=tmp_path,
                                        check=True).stdout
    schema = json.loads(dslrun("schema", cwd=tmp_path, check=True).stdout)
    titles = {s["title"] for s in schema["properties"]["steps"]["items"]["oneOf"]}
    assert {"load", "rank", "save", "length", "dedup", "derive", "filter", "sample"} <= titles
    yaml_text = dslrun("fmt", str(SPECS / "longest.sel"), "--to", "yaml", cwd=tmp_path, check=True).stdout
    assert yaml_text == (SPECS / "longest.yaml").read_text()


@pytest.mark.parametrize("command", ["check", "plan", "explain", "graph", "fmt"])
def test_static_commands_never_import_torch(command, tmp_path):
    code = ("import sys; from dslrun.runtime.cli import main; rc = main(sys.argv[1:]); "
            "bad = [m for m in ('torch', 'transformers', 'openai', 'ray') if m in sys.modules]; "
            "print('HEAVY', bad); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, command, str(SPECS / "longest.sel")], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout
