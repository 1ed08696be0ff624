"""InsTag's tagging prompt and a forgiving reader of its JSON replies.

Prompt: the InsTagger model card's format (OFA-Sys/InsTagger, Lu et al., "#InsTag:
Instruction Tagging for Analyzing Supervised Fine-tuning of Large Language Models",
ICLR 2024): a Vicuna system message and the user message below. The query is the
instruction, followed by a newline and the input when the sample has one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dslrun.operators.llm.prompts import ParseError, fill, json_values

INSTAG_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
                 "helpful, detailed, and polite answers to the human's questions.")
INSTAG_USER = ('Please identify tags of user intentions in the following user query and provide an explanation '
               'for each tag. Please respond in the JSON format {"tag": str, "explanation": str}.\n'
               'User query: {instruction}')
_PAIR = re.compile(r'"tag"\s*:\s*"((?:[^"\\]|\\.)*)"')


def instag_messages(sample: Mapping[str, Any]) -> list[dict[str, str]]:
    query = sample.get("instruction", "")
    if sample.get("input"):
        query = f"{query}\n{sample['input']}"
    return [{"role": "system", "content": INSTAG_SYSTEM},
            {"role": "user", "content": fill(INSTAG_USER, {"instruction": query, "input": "", "output": ""})}]


def parse_tags(text: str) -> list[str]:
    """Tags named in a reply: a JSON list of ``{"tag", "explanation"}`` objects, a single object,
    several objects, all possibly fenced or among chatter; else every ``"tag": "..."`` pair."""
    tags: list[str] = []
    for value in json_values(text):
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("tag"), str) and item["tag"].strip():
                tags.append(item["tag"].strip())
            elif isinstance(item, str) and item.strip():  # a bare list of tag names
                tags.append(item.strip())
    if not tags:
        tags = [m.strip() for m in _PAIR.findall(text) if m.strip()]
    if not tags:
        raise ParseError(f"no tags found in the reply: {text[:80]!r}")
    return tags
