"""Prompt templates: how an instruction (+ input) becomes the text a causal LM is conditioned on.

Built-in templates keep the exact strings of the code they come from:

- ``alpaca``          Stanford Alpaca / Cherry LLM ``PROMPT_DICT`` (``cherry_seletion/data_analysis.py``);
- ``superfiltering``  Superfiltering ``PROMPT_DICT_NONE``: ``"{instruction}\\n{input}\\n"`` or
                      ``"{instruction}\\n"``, no system prompt (``code_ifd/data_analysis.py``);
- ``vicuna``          Cherry LLM ``PROMPT_DICT_VICUNA`` (``cherry_seletion/data_analysis_vic.py``);
- ``wizardlm``        Cherry LLM's ``wiz`` prompt;
- ``chat``            the model's own chat template (:class:`ChatTemplate`);
- a custom file       :func:`load_template_file` (JSON/YAML with the fields below, or plain text).

``direct_prefix`` is the response header that Cherry LLM's *unconditioned* text starts
with (``'### Response:' + output``, ``'ASSISTANT:' + output``).

Multi-turn samples (:func:`conversation_pairs`): every assistant turn is one scored
(prompt, response) pair. Its prompt is the whole conversation before it — first user
turn rendered with the single-turn template, earlier assistant replies followed by
``turn_separator``, later user turns rendered with ``followup`` — ending in the
assistant header; a leading system message is prepended as ``"{system}\\n\\n"`` (chat
templates pass it to the model's template instead). How turn scores are aggregated into
one sample score is stated in :func:`dslrun.operators.lm.losses.aggregate_turns`.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

ALLOWED_FIELDS = frozenset({"instruction", "input"})


class TemplateError(ValueError):
    """A template is malformed or cannot render a sample."""


def _fields(fmt: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(fmt) if name is not None}
    except ValueError as exc:
        raise TemplateError(f"bad template {fmt!r}: {exc}") from None


class Template(Protocol):
    @property
    def name(self) -> str: ...

    def render(self, instruction: str, input: str = "") -> str: ...
    def prompts(self, messages: Sequence[Mapping[str, str]]) -> list[tuple[str, str]]: ...
    @property
    def direct_prefix(self) -> str: ...


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    prompt_input: str  # fields {instruction} and {input}
    prompt_no_input: str  # field {instruction}
    direct_prefix: str = ""
    followup: str = ""  # later user turns of a conversation; default: prompt_no_input
    turn_separator: str = "\n\n"

    def __post_init__(self) -> None:
        for label, fmt in (("prompt_input", self.prompt_input),
                           ("prompt_no_input", self.prompt_no_input), ("followup", self.followup)):
            bad = _fields(fmt) - ALLOWED_FIELDS
            if bad:
                raise TemplateError(f"template {self.name!r} {label}: unknown field(s) "
                                    f"{', '.join(sorted(bad))}; allowed: instruction, input")
        if "instruction" not in _fields(self.prompt_no_input):
            raise TemplateError(f"template {self.name!r}: prompt_no_input needs {{instruction}}")

    def render(self, instruction: str, input: str = "") -> str:
        """The prompt for one instruction; an empty *input* selects ``prompt_no_input``."""
        if input:
            if "input" not in _fields(self.prompt_input):
                raise TemplateError(f"template {self.name!r} has no {{input}} slot "
                                    "but the sample has an input")
            return self.prompt_input.format_map({"instruction": instruction, "input": input})
        return self.prompt_no_input.format_map({"instruction": instruction, "input": ""})

    def prompts(self, messages: Sequence[Mapping[str, str]]) -> list[tuple[str, str]]:
        """(prompt, response) for every assistant turn of *messages*."""
        system, turns = _split_messages(messages)
        text = f"{system}\n\n" if system else ""
        pairs: list[tuple[str, str]] = []
        for i, (user, reply) in enumerate(turns):
            if i == 0:
                text += self.render(user)
            else:
                follow = self.followup or self.prompt_no_input
                text += follow.format_map({"instruction": user, "input": ""})
            pairs.append((text, reply))
            text += reply + self.turn_separator
        return pairs


ALPACA = PromptTemplate(
    "alpaca",
    prompt_input=(
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
    ),
    prompt_no_input=(
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Response:"
    ),
    direct_prefix="### Response:",
    followup="### Instruction:\n{instruction}\n\n### Response:",
    turn_separator="\n\n",
)

SUPERFILTERING = PromptTemplate(
    "superfiltering",
    prompt_input="{instruction}\n{input}\n",
    prompt_no_input="{instruction}\n",
    direct_prefix="",
    turn_separator="\n",
)

_VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions. "
)
VICUNA = PromptTemplate(
    "vicuna",
    prompt_input=_VICUNA_SYSTEM + "USER: {instruction}\nInput:\n{input} ASSISTANT:",
    prompt_no_input=_VICUNA_SYSTEM + "USER: {instruction} ASSISTANT:",
    direct_prefix="ASSISTANT:",
    followup="USER: {instruction} ASSISTANT:",
    turn_separator="</s>",
)

WIZARDLM = PromptTemplate(
    "wizardlm",
    prompt_input="{instruction}\nInput:{input}\n\n### Response:",
    prompt_no_input="{instruction}\n\n### Response:",
    direct_prefix="### Response:",
    followup="{instruction}\n\n### Response:",
    turn_separator="\n\n",
)

BUILTIN: dict[str, PromptTemplate] = {t.name: t for t in (ALPACA, SUPERFILTERING, VICUNA, WIZARDLM)}


class ChatTemplate:
    """The tokenizer's own chat template (``tokenizer.apply_chat_template``).

    The prompt of an assistant turn is the conversation before it rendered with
    ``add_generation_prompt=True``; the response is the assistant's content without the
    end-of-turn marker. ``direct_prefix`` is the generation header alone (the text that
    ``add_generation_prompt`` appends, e.g. ``"<|im_start|>assistant\\n"``).
    """

    name = "chat"

    def __init__(self, tokenizer: Any, system: str | None = None):
        if not getattr(tokenizer, "chat_template", None):
            raise TemplateError("this tokenizer has no chat template; pick a named template")
        self.tokenizer, self.system = tokenizer, system

    def _apply(self, messages: list[dict[str, str]], gen: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)

    @property
    def direct_prefix(self) -> str:
        probe = [{"role": "user", "content": "x"}]
        with_gen, without = self._apply(probe, True), self._apply(probe, False)
        return with_gen[len(without):] if with_gen.startswith(without) else ""

    def render(self, instruction: str, input: str = "") -> str:
        content = f"{instruction}\n\n{input}" if input else instruction
        return self.prompts([{"role": "user", "content": content},
                             {"role": "assistant", "content": ""}])[0][0]

    def prompts(self, messages: Sequence[Mapping[str, str]]) -> list[tuple[str, str]]:
        msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
        if self.system is not None and (not msgs or msgs[0]["role"] != "system"):
            msgs.insert(0, {"role": "system", "content": self.system})
        return [(self._apply(msgs[:i], True), m["content"])
                for i, m in enumerate(msgs) if m["role"] == "assistant"]


def _split_messages(messages: Sequence[Mapping[str, str]]) -> tuple[str, list[tuple[str, str]]]:
    """(system text, [(user, assistant), ...]); consecutive same-role messages are joined."""
    system, user = "", None
    turns: list[tuple[str, str]] = []
    for m in messages:
        role, content = m.get("role"), m.get("content", "")
        if role == "system" and not turns and user is None:
            system = f"{system}\n\n{content}" if system else content
        elif role == "user":
            user = content if user is None else f"{user}\n\n{content}"
        elif role == "assistant":
            if user is None:
                raise TemplateError("an assistant turn without a user turn before it")
            turns.append((user, content))
            user = None
        else:
            raise TemplateError(f"unknown message role {role!r} (system, user, assistant)")
    return system, turns


def conversation_pairs(messages: Sequence[Mapping[str, str]], template: Template) -> list[tuple[str, str]]:
    """(prompt, response) for every assistant turn; see the module doc for the rule."""
    return template.prompts(messages)


def load_template_file(path: str | Path) -> PromptTemplate:
    """A custom template: JSON or YAML with ``prompt_input``, ``prompt_no_input`` and optional
    ``direct_prefix``, ``followup``, ``turn_separator``, ``name``; or a plain-text file used
    for both cases (``{instruction}`` required, ``{input}`` optional)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".json", ".yaml", ".yml"):
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
        if not isinstance(data, dict):
            raise TemplateError(f"{path}: expected a mapping of template fields")
        known = {"name", "prompt_input", "prompt_no_input", "direct_prefix", "followup", "turn_separator"}
        extra = set(data) - known
        if extra:
            raise TemplateError(f"{path}: unknown key(s) {', '.join(sorted(extra))}")
        if "prompt_no_input" not in data:
            raise TemplateError(f"{path}: prompt_no_input is required")
        data.setdefault("name", path.stem)
        data.setdefault("prompt_input", data["prompt_no_input"])
        return PromptTemplate(**data)
    return PromptTemplate(path.stem, prompt_input=text, prompt_no_input=text)


def get_template(name: str | Path, tokenizer: Any = None) -> Template:
    """A built-in name, ``chat`` (needs *tokenizer*), or a path to a template file."""
    if isinstance(name, str) and name in BUILTIN:
        return BUILTIN[name]
    if name == "chat":
        return ChatTemplate(tokenizer)
    if Path(name).is_file():
        return load_template_file(name)
    raise TemplateError(f"unknown template {name!r}; built-in: {', '.join([*BUILTIN, 'chat'])}, "
                        "or a path to a template file")
