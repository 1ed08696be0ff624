"""DEITA's complexity and quality scorers against the released code's rule.

``deita/selection/scorer/base.py``: the prompt is the scorer template filled with the
user's query (and the response), encoded with the tokenizer's special tokens, and
``model.generate(..., output_scores=True)`` is run; the score is the expectation of 1…6
under the softmax of ``scores[0]`` (the first step's scores, after the model's logits
processors) at the tokens "1"…"6". ``pipeline/score_pipeline.py`` (ShareGPT): one score
per user turn, the query being that turn's text and the response the reply after it (""
for a trailing question); ``filter/combined_filter.py``: evol score = Σ over turns of
complexity × quality. The reference below is our own code following those steps.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from dslrun.operators.llm.prompts import DEITA_COMPLEXITY, DEITA_QUALITY, JUDGES  # noqa: E402
from dslrun.runtime.data.pool_files import parse_record  # noqa: E402
from testkit.cli import dslrun_here  # noqa: E402
from testkit.tiny_lm import save_tiny_lm  # noqa: E402

ROWS = [  # Alpaca rows, two with an input the instruction refers to
    {"instruction": "Identify all verbs in the sentence.", "input": "The robot writes and reads.",
     "output": "writes, reads"},
    {"instruction": "Name a primary color.", "input": "", "output": "Blue is a primary color."},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
]
CONVERSATION = {"conversations": [  # ShareGPT, two turns and a trailing question
    {"from": "human", "value": "Name a primary color."}, {"from": "gpt", "value": "Blue."},
    {"from": "human", "value": "Add 2 and 3."}, {"from": "gpt", "value": "The sum is five."},
    {"from": "human", "value": "Thanks?"}]}


def deita_score(model, tok, text: str) -> float:
    """DEITA's ``infer_score`` on *text*: expectation of 1..6 at the first generated step."""
    ids = tok.encode(text, return_tensors="pt")
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=2, do_sample=False,
                         return_dict_in_generate=True, output_scores=True, pad_token_id=tok.pad_token_id)
    first = out.scores[0][0]
    digit = torch.tensor([first[tok.convert_tokens_to_ids(str(d))] for d in range(1, 7)]).double()
    return float((digit.softmax(-1) * torch.arange(1, 7)).sum())


def raw_score(model, tok, text: str) -> float:
    """The same expectation from the raw logits (what dslrun read before issue 17)."""
    with torch.no_grad():
        logits = model(tok(text, return_tensors="pt")["input_ids"]).logits[0, -1]
    digit = torch.tensor([logits[tok.convert_tokens_to_ids(str(d))] for d in range(1, 7)]).double()
    return float((digit.softmax(-1) * torch.arange(1, 7)).sum())


def deita_turns(conversation: list[dict]) -> list[tuple[str, str]]:
    """score_pipeline._load_sharegpt: (query, response) per even position."""
    return [(conversation[i]["value"], conversation[i + 1]["value"] if i + 1 < len(conversation) else "")
            for i in range(0, len(conversation), 2)]


def test_deita_query_is_the_user_turn_with_its_input():
    for row in ROWS:
        loaded, _ = parse_record(row, "alpaca", {})
        query = loaded["messages"][0]["content"]  # the pool's user turn
        assert query == row["instruction"] + (f"\n\n{row['input']}" if row["input"] else "")
        assert JUDGES["deita-complexity"].messages(row)[0]["content"] == DEITA_COMPLEXITY.format(instruction=query)
        assert JUDGES["deita-quality"].messages(row)[0]["content"] == DEITA_QUALITY.format(
            instruction=query, output=row["output"])


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    """The tiny GPT-2 with a repetition penalty in its generation config (a logits processor
    DEITA's ``generate`` applies to the scores it reads)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    folder = save_tiny_lm(tmp_path_factory.mktemp("deita") / "lm")
    GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0, repetition_penalty=1.8).save_pretrained(folder)
    return folder, AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def run_recipe(tmp_path, folder, records, name):
    (tmp_path / f"{name}.json").write_text(json.dumps(records))
    (tmp_path / f"{name}.sel").write_text(
        f'pool = load(path: "{name}.json")\n'
        f'c = judge-score(pool, template: deita-complexity, backend: local, model: "{folder}", '
        f'multi_turn: per_turn, column: complexity)\n'
        f'q = judge-score(c, template: deita-quality, backend: local, model: "{folder}", '
        f'multi_turn: per_turn, column: quality)\n'
        f'e = derive(q, column: evol_score, expr: dot(complexity, quality))\n'
        'save(e)\n')
    dslrun_here("run", f"{name}.sel", "-q", cwd=tmp_path, check=True)
    import pyarrow.parquet as pq

    return pq.read_table(tmp_path / "out" / name / "selected.scores.parquet").to_pylist()


def test_deita_scores_and_evol_sum_equal_the_original_rule(scorer, tmp_path):
    """Alpaca rows (one turn, input in the query) and a ShareGPT conversation scored per turn,
    with a repetition penalty in the model's generation config."""
    folder, model, tok = scorer
    rows = run_recipe(tmp_path, folder, ROWS, "alpaca")
    by_row = {r["row"]: r for r in rows}
    raw_differs = False
    for i, row in enumerate(ROWS):
        got = by_row[i]
        query = parse_record(row, "alpaca", {})[0]["messages"][0]["content"]
        c = deita_score(model, tok, DEITA_COMPLEXITY.format(instruction=query))
        q = deita_score(model, tok, DEITA_QUALITY.format(instruction=query, output=row["output"]))
        assert got["complexity"] == pytest.approx([c], abs=1e-5)
        assert got["quality"] == pytest.approx([q], abs=1e-5)
        assert got["evol_score"] == pytest.approx(c * q, abs=1e-4)
        raw_differs |= abs(raw_score(model, tok, DEITA_QUALITY.format(instruction=query, output=row["output"])) - q) > 1e-3
    assert raw_differs, "the repetition penalty should change some score here (raw logits differ)"
    (conv,) = run_recipe(tmp_path, folder, [CONVERSATION], "sharegpt")
    turns = deita_turns(CONVERSATION["conversations"])
    cs = [deita_score(model, tok, DEITA_COMPLEXITY.format(instruction=u)) for u, _ in turns]
    qs = [deita_score(model, tok, DEITA_QUALITY.format(instruction=u, output=a)) for u, a in turns]
    assert conv["complexity"] == pytest.approx(cs, abs=1e-5) and conv["quality"] == pytest.approx(qs, abs=1e-5)
    assert conv["evol_score"] == pytest.approx(sum(c * q for c, q in zip(cs, qs)), abs=1e-4)
