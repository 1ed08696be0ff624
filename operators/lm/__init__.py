"""Causal-LM scoring kernels: prompt templates, per-token losses, IFD.

Pure functions over a (model, tokenizer) pair and a batch of texts; the ``ifd`` and
perplexity operators wire them into the runtime, which chooses batches and devices.
Importing this package does not import torch.

- :mod:`.templates` — Alpaca, Superfiltering, Vicuna, WizardLM, the model's chat template,
  custom template files; the multi-turn rule.
- :mod:`.losses`    — ``response_logprobs`` / ``response_losses`` / ``score_sequences``.
- :mod:`.ifd`       — ``ifd_scores`` (variants ``cherry`` and ``superfiltering``),
  ``ifd_conversations`` and ``aggregate_turns`` for multi-turn samples.
"""

from .ifd import VARIANTS, IFDScore, aggregate_turns, ifd_conversations, ifd_scores
from .losses import TokenScores, response_logprobs, response_losses, score_sequences
from .templates import (
    ALPACA,
    BUILTIN,
    SUPERFILTERING,
    VICUNA,
    WIZARDLM,
    ChatTemplate,
    PromptTemplate,
    TemplateError,
    conversation_pairs,
    get_template,
    load_template_file,
)

__all__ = [
    "ALPACA",
    "BUILTIN",
    "SUPERFILTERING",
    "VARIANTS",
    "VICUNA",
    "WIZARDLM",
    "ChatTemplate",
    "IFDScore",
    "PromptTemplate",
    "TemplateError",
    "TokenScores",
    "aggregate_turns",
    "conversation_pairs",
    "get_template",
    "ifd_conversations",
    "ifd_scores",
    "load_template_file",
    "response_logprobs",
    "response_losses",
    "score_sequences",
]
