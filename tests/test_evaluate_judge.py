"""Pairwise judging (Cherry LLM / AlpaGasus rule) and the unified comparison, against hand-computed values."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from dslrun.operators.evaluation import efficiency as eff
from dslrun.operators.evaluation.judge import (
    ReviewParseError,
    Tally,
    aggregate,
    combine,
    load_review_file,
    parse_review,
    review_messages,
)
from dslrun.operators.evaluation.pairwise import Pair, judge_pairs
from dslrun.runtime.api import ApiPool, Reply, RetryPolicy
from dslrun.runtime.cache.sqlite import ScoreCache

REVIEWS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cherry_llm" / "reviews_gpt4"


def test_parse_review_first_line_two_numbers():
    assert parse_review("9 8.5\nBoth assistants ...") == (9.0, 8.5)
    assert parse_review("7,8\nexplanation") == (7.0, 8.0)  # commas count as spaces
    for bad in ("Assistant 1: 9\nAssistant 2: 8", "9\n8", "9  8", "", "nine eight"):
        with pytest.raises(ReviewParseError):
            parse_review(bad)


# (SEM first: sem vs other), (other first: other vs sem) -> outcome: the nine cases of review_eval_score.py
CASES = [((9, 8), (8, 9), "win"), ((8, 9), (8, 9), "tie"), ((9, 8), (9, 8), "tie"),
         ((8, 8), (8, 9), "win"), ((9, 8), (8, 8), "win"), ((8, 8), (9, 8), "loss"),
         ((8, 9), (8, 8), "loss"), ((8, 8), (8, 8), "tie"), ((7, 9), (9, 7), "loss")]


@pytest.mark.parametrize("fwd,rev,want", CASES)
def test_combine_both_orders(fwd, rev, want):
    assert combine(fwd, rev) == want


def test_tally_winning_score():
    t = Tally(win=5, tie=3, loss=2)
    assert t.n == 10 and t.winning_score == pytest.approx(1.3)


class ScriptedJudge:
    """Scores an answer by the number after "Q" in it, plus one point for being shown first
    (a position bias that the both-order rule must cancel). Says nothing useful for "mute"."""

    def __init__(self):
        self.calls = 0

    async def chat(self, messages, **opts):
        self.calls += 1
        user = messages[-1]["content"]
        if "mute" in user:
            return Reply(text="I cannot compare these answers.")
        a1 = int(re.search(r"Assistant 1's Answer\]\nQ(\d+)", user).group(1))
        a2 = int(re.search(r"Assistant 2's Answer\]\nQ(\d+)", user).group(1))
        return Reply(text=f"{a1 + 1} {a2}\nAssistant 1 was shown first.", input_tokens=10, output_tokens=5)


PAIRS = [
    Pair("vicuna", "q1", "Q8", "Q5"),   # fwd 9>5, rev 6<8: win
    Pair("vicuna", "q2", "Q5", "Q5"),   # fwd 6>5, rev 6>5 (other ahead): tie — bias cancelled
    Pair("vicuna", "q3", "Q5", "Q6"),   # fwd 6=6, rev 7>5: loss
    Pair("lima", "q4", "Q6", "Q5"),     # fwd 7>5, rev 6=6: win
    Pair("lima", "q5", "Q4", "Q8"),     # fwd 5<8, rev 9>4: loss
    Pair("lima", "mute q6", "Q9", "Q1"),  # unparsable both ways: [-1,-1] twice: tie
    Pair("lima", "q7", "Q7", "Q3"),     # win
]


def test_scripted_judge_both_orders_and_cache(tmp_path):
    cache = ScoreCache(tmp_path / "scores.sqlite")
    judge = ScriptedJudge()
    pool = ApiPool(max_concurrency=4, retry=RetryPolicy(max_attempts=2, base_delay=0.01))
    rows, result, _ = judge_pairs(PAIRS, judge, pool, cache=cache, identity="scripted")
    # Both orders of q2 are the same request (equal answers): sent once.
    assert judge.calls == 2 * len(PAIRS) - 1
    d = result.as_dict()
    assert d["per_set"]["vicuna"] == {"win": 1, "tie": 1, "loss": 1, "n": 3, "winning_score": 1.0}
    assert d["per_set"]["lima"]["win"] == 2 and d["per_set"]["lima"]["tie"] == 1 and d["per_set"]["lima"]["loss"] == 1
    assert d["per_set"]["lima"]["winning_score"] == pytest.approx(1.25)
    assert (d["total"]["win"], d["total"]["tie"], d["total"]["loss"]) == (3, 2, 2)
    assert d["total"]["winning_score"] == pytest.approx(1 + 1 / 7)
    assert d["unparsed_reviews"] == 1
    mute = next(r for r in rows if r["question"] == "mute q6")
    assert mute["scores"] == (-1.0, -1.0) and "cannot" in mute["review"]
    # The same evaluation again: every review comes from the cache.
    again = ScriptedJudge()
    _, result2, summary = judge_pairs(PAIRS, again, pool, cache=cache, identity="scripted")
    assert again.calls == 0 and result2.as_dict() == d and "cached" in summary
    cache.close()


def test_review_prompt_is_cherrys():
    msgs = review_messages("Q?", "A1", "A2")
    assert msgs[0]["content"] == "You are a helpful and precise assistant for checking the quality of the answer."
    user = msgs[1]["content"]
    assert user.startswith("[Question]\nQ?\n\n[The Start of Assistant 1's Answer]\nA1\n\n[The End of Assistant 1's Answer]")
    assert "Please first output a single line containing only two values" in user and user.endswith("judgment.\n\n")


def _rule_table(s, r):
    """review_eval_score.py's branches, transcribed case by case (independent of ``combine``)."""
    k1, k2, k1r, k2r = s[0], s[1], r[1], r[0]
    table = {(">", ">"): 0, ("<", ">"): 1, (">", "<"): 1, ("=", ">"): 0, (">", "="): 0,
             ("=", "<"): 2, ("<", "="): 2, ("=", "="): 1, ("<", "<"): 2}
    cmp = lambda a, b: ">" if a > b else "<" if a < b else "="  # noqa: E731
    return table[(cmp(k1, k2), cmp(k1r, k2r))]


@pytest.mark.skipif(not REVIEWS.is_dir(), reason="../shared/data/cherry_llm/reviews_gpt4 not present")
def test_real_gpt4_reviews_parse_and_aggregate():
    files = sorted(REVIEWS.glob("*.json"))
    assert {f.stem for f in files} == {"vicuna", "koala", "wizardlm", "sinstruct", "lima"}
    all_rows, expected = [], [0, 0, 0]
    for f in files:
        raw = json.loads(f.read_text())
        rows = load_review_file(f)
        stored = load_review_file(f, reparse=False)
        assert len(rows) == len(raw["data"])
        # Our parser reads the raw GPT-4 reviews to the scores the original stored.
        assert [r["scores"] for r in rows] == [r["scores"] for r in stored]
        assert [r["scores_reverse"] for r in rows] == [r["scores_reverse"] for r in stored]
        # ... and their means are the Meta_Info averages the original wrote.
        mean = [sum(r["scores"][i] for r in rows) / len(rows) for i in (0, 1)]
        assert mean == pytest.approx(json.loads(raw["Meta_Info"]["average_scores"]))
        for r in rows:
            expected[_rule_table(r["scores"], r["scores_reverse"])] += 1
        all_rows += rows
    total = aggregate(all_rows).total
    assert total.n == 1030
    assert [total.win, total.tie, total.loss] == expected
    assert total.winning_score == pytest.approx((expected[0] - expected[2]) / 1030 + 1)
    assert total.winning_score > 1  # the Cherry 5% model beats the full-Alpaca model, as the paper reports


def test_pir_sdf_and_distance_hand_computed():
    assert eff.pir([1.2, 1.4]) == pytest.approx(1.3)
    assert eff.pir([1.2, 3.0], [4.0]) == pytest.approx((0.3 + 0.75) / 2)  # TEDD-Ranker's example
    assert eff.pir([2.0, 3.0], [1.0, 2.0]) == pytest.approx(1.75)
    with pytest.raises(ValueError):
        eff.pir([1.0, 2.0, 3.0], [1.0, 2.0])
    assert eff.sdf(50, 1000) == 0.05
    # Baseline through Instruction-Mining (0.025, 1.400) and InstructionGPT-4 (0.06, 1.443).
    slope, intercept = eff.baseline_line()
    assert slope == pytest.approx(0.043 / 0.035)
    assert intercept == pytest.approx(1.4 - 0.025 * 0.043 / 0.035)
    # IFD at (0.05, 1.747): line there = 1.4 + 0.025 * 1.228571 = 1.430714; gap 0.316286.
    gap = 1.747 - (1.4 + 0.025 * (0.043 / 0.035))
    assert eff.vertical_gap(0.05, 1.747) == pytest.approx(gap)
    assert eff.signed_distance(0.05, 1.747) == pytest.approx(gap / math.sqrt(1 + (0.043 / 0.035) ** 2))
    assert eff.signed_distance(0.06, 1.443) == pytest.approx(0.0, abs=1e-12)  # on the line
    assert eff.signed_distance(0.5, 1.0) < 0  # below


def test_published_points_have_sources():
    names = {p.method for p in eff.PUBLISHED}
    assert names >= {"AlpaGasus", "Superfiltering", "InsTag", "DEITA", "InstructionGPT-4", "Nuggets", "IFD",
                     "LESS", "Instruction-Mining"}
    assert all(p.source and 0 < p.sdf < 1 and p.pir > 1 for p in eff.PUBLISHED)


@pytest.mark.parametrize("command", ["check", "plan"])
def test_static_commands_on_an_evaluate_spec_stay_light(command, tmp_path):
    import subprocess
    import sys

    spec = Path(__file__).resolve().parents[1] / "specs" / "evaluate_demo.sel"
    code = ("import sys; from dslrun.runtime.cli import main; rc = main(sys.argv[1:]); "
            "bad = [m for m in ('torch', 'transformers', 'peft', 'matplotlib', 'openai') if m in sys.modules]; "
            "print('HEAVY', bad); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, command, str(spec)], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout
