"""Judge prompts of the published selectors, byte for byte, and the parsers of their replies.

Sources (strings copied from the methods' public code, tested byte for byte):

* AlpaGasus, ``rating/chatgpt_rating.py`` (gpt4life/alpagasus): system message, the
  ``###Instruction:`` triplet (no space after the first ``###``; the Input block present
  even when empty) and the accuracy criterion; the helpfulness criterion is the one
  commented out beside it. ``rating/get_scores.py``: score = ``float`` of the reply's
  first line, -1 when that fails. Sent with temperature 0, max_tokens 256.
* DEITA, ``deita/selection/scorer`` (hkust-nlp/deita): the complexity and quality scorer
  prompts, sent as raw text to the scorer model; score = expectation of 1…6 under the
  softmax of the logits of the tokens "1"…"6" at the first generated position. The
  ``{instruction}`` slot holds the sample's user turn (instruction and input, as in its
  ``messages``), the query DEITA's ShareGPT pipeline reads.

Every named judge declares its scale (AlpaGasus 0–5, DEITA 1–6: the range its prompt
asks for). A parsed value outside it, or not finite (``inf``, ``nan``), is not a score:
``judge-score`` gives it the template's failure value and the reason ``out of scale: V``
(``scale_reason``), keeping the raw reply in the cache.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ALPAGASUS_SYSTEM = ("We would like to request your feedback on the performance of AI assistant in response "
                    "to the instruction and the given input displayed following.")
ALPAGASUS_TRIPLET = "###Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n{output}\n\n"
ALPAGASUS_ACCURACY = (
    "Please rate according to the accuracy of the response to the instruction and the input. Each assistant "
    "receives a score on a scale of 0 to 5, where a higher score indicates higher level of the accuracy. "
    "Please first output a single line containing value indicating the scores. In the subsequent line, please "
    "provide a comprehensive explanation of your evaluation, avoiding any potential bias. \n\n")
ALPAGASUS_HELPFULNESS = (
    "Please rate according to the helpfulness of the response to the instruction and the input. Each assistant "
    "receives an score on a scale of 0 to 5, where a higher score indicates higher level of the helpfulness. "
    "Please first output a single line containing value indicating the scores. In the subsequent line, please "
    "provide a comprehensive explanation of your evaluation, avoiding any potential bias. \n\n")
DEITA_COMPLEXITY = ("You are a helpful assistant. Please identify the complexity score of the following user "
                    "query. \n##Query: {instruction}  \n##Complexity: ")
DEITA_QUALITY = ("You are a helpful assistant. Please identify the quality score of the Response corresponding "
                 "to the Question. \n #Question#:\n{instruction}\n#Response#:\n{output} \n##Quality: ")


class ParseError(ValueError):
    """The reply does not hold what the parser looks for (the message says what it saw)."""


@dataclass(frozen=True)
class Judge:
    """A named judge: how to build the messages and how to read the reply.

    ``system``/``user`` are ``str.format`` templates over the sample's fields
    (``instruction``, ``input``, ``output``); ``raw`` marks prompts the original sends
    as plain text to a completion model (the local backend then skips the chat template);
    ``on_failure`` is the score the original records for an unparsable reply; ``scale`` the
    inclusive range a score must lie in (None: any finite number).
    """

    name: str
    user: str
    system: str | None = None
    parser: str = "first-line"  # first-line | expected-digit | regex | json
    temperature: float = 0.0
    max_tokens: int = 256
    raw: bool = False
    logprobs: bool = False
    on_failure: float | None = None
    scale: tuple[float, float] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    user_turn: bool = False  # {instruction} is the whole user turn: instruction + input

    def messages(self, sample: Mapping[str, str]) -> list[dict[str, str]]:
        fields = {k: sample.get(k, "") for k in ("instruction", "input", "output")}
        if self.user_turn:
            fields["instruction"] = user_turn(fields["instruction"], fields["input"])
        out = [{"role": "system", "content": self.system.format_map(fields)}] if self.system else []
        return out + [{"role": "user", "content": fill(self.user, fields)}]


def user_turn(instruction: str, input: str) -> str:
    """The user turn of an Alpaca row, joined as ``load`` joins it into ``messages``
    (``runtime/data/pool_files.py: parse_record``): DEITA scores the user's query, which for a row
    with an input holds both (an instruction alone may point at text it lacks)."""
    return instruction + ("\n\n" + input if input.strip() else "")


def fill(template: str, fields: Mapping[str, str]) -> str:
    """``{instruction}``, ``{input}``, ``{output}`` replaced; other braces left alone (prompts
    quote JSON), and a field's own text is never re-expanded."""
    return re.sub(r"\{(instruction|input|output)\}", lambda m: fields[m.group(1)], template)


JUDGES = {
    # "a score on a scale of 0 to 5"
    "alpagasus": Judge("alpagasus", ALPAGASUS_TRIPLET + ALPAGASUS_ACCURACY, ALPAGASUS_SYSTEM, on_failure=-1.0,
                       scale=(0.0, 5.0)),
    "alpagasus-helpfulness": Judge("alpagasus-helpfulness", ALPAGASUS_TRIPLET + ALPAGASUS_HELPFULNESS,
                                   ALPAGASUS_SYSTEM, on_failure=-1.0, scale=(0.0, 5.0)),
    # DEITA's scorers generate at most 2 tokens; only the first position is read. An expectation
    # over 1…6 lies in [1, 6] unless a logprob is not finite.
    "deita-complexity": Judge("deita-complexity", DEITA_COMPLEXITY, parser="expected-digit", max_tokens=2,
                              raw=True, logprobs=True, scale=(1.0, 6.0), user_turn=True),
    "deita-quality": Judge("deita-quality", DEITA_QUALITY, parser="expected-digit", max_tokens=2, raw=True,
                           logprobs=True, scale=(1.0, 6.0), user_turn=True),
}


def scale_reason(value: float, scale: tuple[float, float] | None) -> str | None:
    """Why *value* is not a score on *scale* (``out of scale: 99 (scale 0-5)``), or None."""
    if math.isfinite(value) and (scale is None or scale[0] <= value <= scale[1]):
        return None
    where = f" (scale {scale[0]:g}-{scale[1]:g})" if scale is not None else " (not a finite number)"
    return f"out of scale: {value:g}{where}"


# --------------------------------------------------------------------------- parsers
def first_line_float(text: str) -> float:
    """AlpaGasus ``get_scores.parse_score``: Python's ``float`` of everything before the first newline."""
    head = text.split("\n")[0]
    try:
        return float(head)
    except ValueError:
        raise ParseError(f"first line is not a number: {head[:80]!r}") from None


DIGITS = ("1", "2", "3", "4", "5", "6")


def expected_digit(top_logprobs: Mapping[str, float] | None, text: str) -> tuple[float, str]:
    """DEITA's score: Σ softmax(logit of "1"…"6") × (1…6) at the first generated position.

    A softmax over just those six tokens needs only their log-probabilities (a common
    offset cancels), so API ``top_logprobs`` give the same number as the local logits when
    all six are among them; digits missing from the top list are left out (renormalised
    over those present). Without logprobs, the first digit 1–6 of the reply. Returns the
    score and how it was obtained ("logprobs" or "text").
    """
    if top_logprobs:
        present = {tok.strip(): lp for tok, lp in top_logprobs.items()
                   if tok.strip() in DIGITS and lp is not None}
        present.update({tok: lp for tok, lp in top_logprobs.items() if tok in DIGITS and lp is not None})
        if present:
            top = max(present.values())
            weights = {d: math.exp(lp - top) for d, lp in present.items()}
            total = sum(weights.values())
            return sum(int(d) * w for d, w in weights.items()) / total, "logprobs"
    m = re.search(r"[1-6]", text)
    if m is None:
        raise ParseError(f"no score digit 1-6 in the reply or its top logprobs: {text[:80]!r}")
    return float(m.group(0)), "text"


def regex_float(text: str, pattern: str) -> float:
    m = re.search(pattern, text)
    if m is None:
        raise ParseError(f"pattern {pattern!r} not found in {text[:80]!r}")
    value = m.group(1) if m.groups() else m.group(0)
    try:
        return float(value)
    except ValueError:
        raise ParseError(f"matched {value[:40]!r}, not a number") from None


def json_field(text: str, key: str) -> Any:
    """``key`` of the first JSON object in the reply (code fences and chatter around it allowed)."""
    for obj in json_values(text):
        if isinstance(obj, dict) and key in obj:
            return obj[key]
    raise ParseError(f"no JSON object with key {key!r} in {text[:80]!r}")


def json_values(text: str) -> list[Any]:
    """Every top-level JSON value (object or array) found in *text*, in order."""
    decoder = json.JSONDecoder()
    out: list[Any] = []
    i = 0
    while True:
        starts = [j for j in (text.find("{", i), text.find("[", i)) if j >= 0]
        if not starts:
            return out
        j = min(starts)
        try:
            value, end = decoder.raw_decode(text, j)
        except json.JSONDecodeError:
            i = j + 1
            continue
        out.append(value)
        i = end
