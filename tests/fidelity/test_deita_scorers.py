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

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from dslrun.operators.llm.prompts import DEITA_COMPLEXITY, DEITA_QUALITY, JUDGES  # noqa: E402
from dslrun.runtime.pools import parse_record  # noqa: E402

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
