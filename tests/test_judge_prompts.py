"""``judge-score``'s published prompts byte for byte and its reply parsers, against each
method's own rule (split from test_judge_score.py, which runs whole specs against the server)."""

from __future__ import annotations

import math

import pytest

from dslrun.operators.llm.prompts import (
    JUDGES,
    ParseError,
    expected_digit,
    first_line_float,
    json_field,
    regex_float,
)

SAMPLE = {"instruction": "Give three tips for staying healthy.", "input": "",
          "output": "1. Eat well.\n2. Sleep.\n3. Move."}


# ----------------------------------------------------------------------------- prompts
def test_alpagasus_messages_are_the_originals_byte_for_byte():
    msgs = JUDGES["alpagasus"].messages(SAMPLE)
    assert msgs[0] == {"role": "system", "content": (
        "We would like to request your feedback on the performance of AI assistant in response to the "
        "instruction and the given input displayed following.")}
    assert msgs[1]["role"] == "user"
    assert msgs[1]["content"] == (
        "###Instruction:\nGive three tips for staying healthy.\n\n### Input:\n\n\n### Response:\n"
        "1. Eat well.\n2. Sleep.\n3. Move.\n\n"
        "Please rate according to the accuracy of the response to the instruction and the input. Each "
        "assistant receives a score on a scale of 0 to 5, where a higher score indicates higher level of the "
        "accuracy. Please first output a single line containing value indicating the scores. In the subsequent "
        "line, please provide a comprehensive explanation of your evaluation, avoiding any potential bias. \n\n")
    helpful = JUDGES["alpagasus-helpfulness"].messages(SAMPLE)[1]["content"]
    assert "according to the helpfulness" in helpful and "receives an score" in helpful  # the original's typo
    j = JUDGES["alpagasus"]
    assert (j.temperature, j.max_tokens, j.on_failure) == (0.0, 256, -1.0)


def test_deita_prompts_are_the_originals_byte_for_byte():
    s = SAMPLE  # with an input, tests/fidelity/test_deita_scorers.py
    assert JUDGES["deita-complexity"].messages(s) == [{"role": "user", "content": (
        "You are a helpful assistant. Please identify the complexity score of the following user query. \n"
        "##Query: Give three tips for staying healthy.  \n##Complexity: ")}]
    assert JUDGES["deita-quality"].messages(s) == [{"role": "user", "content": (
        "You are a helpful assistant. Please identify the quality score of the Response corresponding to the "
        "Question. \n #Question#:\nGive three tips for staying healthy.\n#Response#:\n1. Eat well.\n2. Sleep.\n"
        "3. Move. \n##Quality: ")}]


def test_braces_in_a_sample_are_not_expanded():
    msgs = JUDGES["alpagasus"].messages({"instruction": "print {output} and {}", "input": "{input}", "output": "x"})
    assert "###Instruction:\nprint {output} and {}\n\n### Input:\n{input}\n\n### Response:\nx" in msgs[1]["content"]


# ----------------------------------------------------------------------------- parsers
@pytest.mark.parametrize("text,score", [
    ("4.5\nThe response is accurate.", 4.5), ("5", 5.0), (" 3 \nok", 3.0), ("0\n", 0.0), ("1e0\n", 1.0),
])
def test_first_line_float(text, score):
    assert first_line_float(text) == score


@pytest.mark.parametrize("text", ["Score: 4.5\n", "", "\n4.5", "4.5/5", "four"])
def test_first_line_float_rejects_what_the_original_rejects(text):
    with pytest.raises(ParseError):
        first_line_float(text)


def test_expected_digit_is_the_softmax_expectation_over_1_to_6():
    lps = {"1": -4.0, "2": -3.0, "3": -2.0, "4": -0.5, "5": -1.5, "6": -5.0, "x": -0.1}
    w = [math.exp(lps[str(d)]) for d in range(1, 7)]
    want = sum(d * x for d, x in zip(range(1, 7), w)) / sum(w)
    got, how = expected_digit(lps, "4")
    assert how == "logprobs" and abs(got - want) < 1e-12
    # digits missing from the top list are left out; " 2" counts as "2"
    assert expected_digit({" 2": -1.0, "4": -1.0, "hello": 0.0}, "")[0] == pytest.approx(3.0)
    assert expected_digit(None, "Complexity: 5") == (5.0, "text")
    assert expected_digit({"a": -0.1}, "score 3") == (3.0, "text")
    with pytest.raises(ParseError):
        expected_digit({"a": -0.1}, "none here: 0 7 9")


def test_regex_and_json_parsers():
    assert regex_float("Rating: 7/10", r"Rating:\s*([0-9.]+)") == 7.0
    with pytest.raises(ParseError):
        regex_float("no rating", r"Rating:\s*([0-9.]+)")
    assert json_field('Sure!\n```json\n{"score": 4, "why": "ok"}\n```', "score") == 4
    assert json_field('[1, 2] then {"other": 1} {"score": "3.5"}', "score") == "3.5"
    with pytest.raises(ParseError):
        json_field('{"score": 4', "score")
