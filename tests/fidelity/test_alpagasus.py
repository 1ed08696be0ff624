"""AlpaGasus against its released rating code (gpt4life/alpagasus, ``rating/``).

``chatgpt_rating.py``: system message + ``###Instruction:`` triplet (the Input block kept
even when empty) + the accuracy criterion, temperature 0, max_tokens 256;
``get_scores.py``: the score is ``float`` of the reply's first line, -1 when that fails.
The expected strings below are written out by hand from the original.
"""

from __future__ import annotations

import pytest

from dslrun.operators.llm.prompts import JUDGES, ParseError, first_line_float

ROW = {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}


def test_prompt_is_the_originals():
    system, user = JUDGES["alpagasus"].messages(ROW)
    assert system == {"role": "system", "content": "We would like to request your feedback on the performance of "
                      "AI assistant in response to the instruction and the given input displayed following."}
    assert user["content"] == (
        "###Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:\n5\n\n"
        "Please rate according to the accuracy of the response to the instruction and the input. Each "
        "assistant receives a score on a scale of 0 to 5, where a higher score indicates higher level of the "
        "accuracy. Please first output a single line containing value indicating the scores. In the subsequent "
        "line, please provide a comprehensive explanation of your evaluation, avoiding any potential bias. \n\n")
    j = JUDGES["alpagasus"]
    assert (j.temperature, j.max_tokens, j.on_failure) == (0.0, 256, -1.0)


@pytest.mark.parametrize("reply, score", [("4.5\nGood.", 4.5), ("5", 5.0), (" 3 \nok", 3.0), ("1e0", 1.0)])
def test_parser_is_float_of_the_first_line(reply, score):
    assert first_line_float(reply) == score


@pytest.mark.parametrize("reply", ["Score: 4\n", "4/5", "", "\n4"])
def test_parser_fails_where_float_fails(reply):
    with pytest.raises(ParseError):  # the operator then records the original's -1
        first_line_float(reply)
