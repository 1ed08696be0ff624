"""``dslrun plan`` tells the truth: money only for paid providers, local models labelled local,
fine-tunes counted."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dslrun.runtime.execution.planner import label, paid_endpoint
from testkit.cli import SPECS, dslrun


def llm_op(backend="openai", base_url=None):
    return SimpleNamespace(llm=SimpleNamespace(backend=backend, base_url=base_url),
                           resource=SimpleNamespace(value="api"))


@pytest.mark.parametrize("backend, base_url, paid", [
    ("openai", None, True),  # the OpenAI default endpoint
    ("openai", "https://api.openai.com/v1", True),
    ("openai", "https://openrouter.ai/api/v1", True),
    ("openai", "http://127.0.0.1:8000/v1", False),  # vLLM, llama.cpp, Ollama on this machine
    ("openai", "http://gpu-box.lan:8000/v1", False),
    ("openai", "https://api.openai.com.evil.example/v1", False),
    ("local", None, False),
])
def test_money_only_for_known_paid_providers(backend, base_url, paid):
    assert paid_endpoint(llm_op(backend, base_url)) is paid


def test_local_backend_is_labelled_local():
    assert label(llm_op("local")) == "local"
    assert label(llm_op("openai", "http://127.0.0.1:8000/v1")) == "api"


def plan_of(tmp_path, *args):
    return dslrun("plan", *args, "--cache-dir", "c", cwd=tmp_path, check=True).stdout


def row(stdout, step):
    return next(line.split() for line in stdout.splitlines() if line.split()[1:2] == [step])


def test_a_self_hosted_judge_costs_no_money_and_a_paid_one_does(tmp_path):
    local = plan_of(tmp_path, str(SPECS / "alpagasus.sel"), "--set", "limit=5", "--set",
                    "base_url=http://127.0.0.1:8000/v1")
    assert row(local, "rated")[-1] == "-" and "$" not in local
    paid = plan_of(tmp_path, str(SPECS / "alpagasus.sel"), "--set", "limit=5")  # OpenAI, the recipe's price
    assert row(paid, "rated")[-1].startswith("$") and "about $" in paid


def test_evaluate_counts_its_fine_tunes(tmp_path):
    out = plan_of(tmp_path, str(SPECS / "evaluate_demo.sel"))
    r = row(out, "evaluate_5")
    assert r[2:4] == ["evaluate", "model"] and r[-2] != "-" and int(r[-2]) > 0
    assert "2 training runs (fine-tunes, LoRA warm-ups; their passes are counted)" in out


def test_a_local_judge_reports_no_api_and_no_cost():
    from dslrun.runtime.api.types import RunSummary
    from dslrun.runtime.execution.llm_runner import summary_note

    s = RunSummary(total=20, ok=19, failed={"unparsable": 1}, calls=20, input_tokens=900, output_tokens=80)
    local = SimpleNamespace(llm=SimpleNamespace(backend="local"), model_name="smollm2-135m")
    note = summary_note(local, s)
    assert note.startswith("local model smollm2-135m: 20 samples: 19 ok, 1 failed; 900+80 tokens")
    assert "api" not in note and "cost" not in note
    assert summary_note(SimpleNamespace(llm=SimpleNamespace(backend="openai")), s).startswith("api: 20 requests")
