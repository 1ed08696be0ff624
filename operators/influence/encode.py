"""Samples → token ids and a loss mask: the model is trained and differentiated on response tokens only.

LESS (``less/data_selection/get_training_dataset.py: encode_with_messages_format``) writes
every conversation in the Tulu chat format and tokenises the whole text at once:

    <|system|>\\n{system}\\n<|user|>\\n{user}\\n<|assistant|>\\n{reply}{eos}\\n ...

(each content ``.strip()``-ed). Everything up to and including an ``<|assistant|>\\n``
header is masked; the reply, its EOS and the newline after it carry the loss. Token
boundaries are found as LESS finds them: by tokenising each prefix of the text (with the
tokenizer's special tokens) and taking its length. The text is cut to ``max_length`` tokens.

Any project template (``alpaca``, ``chat``, a template file, …) works too: its
(prompt, response) pairs for each assistant turn give the masked and scored segments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TULU = "tulu"


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    labels: list[bool]  # labels[t]: token t is predicted (scored) from the tokens before it

    @property
    def n_labels(self) -> int:
        return sum(self.labels[1:])


def tulu_segments(messages: Sequence[Mapping[str, str]], eos: str) -> list[tuple[str, bool]]:
    """(text, scored) pieces of a conversation in LESS's Tulu format."""
    segs: list[tuple[str, bool]] = []
    for m in messages:
        role, content = m.get("role"), (m.get("content") or "").strip()
        if role == "system":
            segs.append(("<|system|>\n" + content + "\n", False))
        elif role == "user":
            segs.append(("<|user|>\n" + content + "\n", False))
        elif role == "assistant":
            segs.append(("<|assistant|>\n", False))
            segs.append((content + eos + "\n", True))
        else:
            raise ValueError(f"unknown message role {role!r} (system, user, assistant)")
    return segs


def template_segments(messages: Sequence[Mapping[str, str]], template: Any) -> list[tuple[str, bool]]:
    """(text, scored) pieces from a project template's cumulative (prompt, response) pairs."""
    segs: list[tuple[str, bool]] = []
    text = ""
    for prompt, response in template.prompts(messages):
        if not prompt.startswith(text):
            raise ValueError(f"template {template.name!r} does not extend the conversation turn by turn")
        segs.append((prompt[len(text):], False))
        segs.append((response, True))
        text = prompt + response
    return segs


def encode_segments(tokenizer: Any, segs: Sequence[tuple[str, bool]], max_length: int) -> Encoded:
    """Tokenise the whole text once; scored spans from the token lengths of its prefixes."""
    full = "".join(t for t, _ in segs)
    ids = list(tokenizer(full, add_special_tokens=True)["input_ids"])[:max_length]
    labels = [False] * len(ids)
    prefix, start = "", None
    for text, scored in segs:
        if start is None:
            start = len(tokenizer(prefix, add_special_tokens=True)["input_ids"]) if prefix else 0
        prefix += text
        end = min(len(tokenizer(prefix, add_special_tokens=True)["input_ids"]), len(ids))
        if scored:
            for t in range(min(start, end), end):
                labels[t] = True
        start = end
    return Encoded(ids, labels)


def encode_samples(tokenizer: Any, conversations: Sequence[Sequence[Mapping[str, str]]], template: str | Any,
                   max_length: int) -> list[Encoded]:
    """Token ids and loss masks for conversations in OpenAI message form."""
    eos = tokenizer.eos_token or ""
    out = []
    for messages in conversations:
        segs = tulu_segments(messages, eos) if template == TULU else template_segments(messages, template)
        out.append(encode_segments(tokenizer, segs, max_length))
    return out
