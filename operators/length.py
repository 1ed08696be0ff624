"""``length``: character, word and (optionally) token counts of each part of a sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from dslrun.core.columns import INT, Columns
from dslrun.core.context import RunContext
from dslrun.core.params import Params
from dslrun.operators.base import TableOperator
from dslrun.operators.registry import register
from dslrun.runtime.data.arrow_text import char_counts, word_counts
from dslrun.runtime.data.packed_ints import PackedInts
from dslrun.runtime.data.table import Table

PARTS = ("instruction", "input", "output")


class LengthParams(Params):
    tokenizer: str | None = Field(
        None, description="the tokenizer of a model (alias, local folder, .gguf or hub id) for *_tokens columns; "
                          "needs dslrun[models]")


@register
class Length(TableOperator[LengthParams]):
    """<part>_chars and <part>_words for instruction, input, output and total; <part>_tokens with a tokenizer."""

    name = "length"
    computes_labels = True

    def output_columns(self, inputs: list[Columns]) -> Columns:
        cols = dict(inputs[0])
        cols.update(self.columns())
        return cols

    def columns(self) -> Columns:
        units = ["chars", "words"] + (["tokens"] if self.params.tokenizer else [])
        return {f"{p}_{u}": INT for p in (*PARTS, "total") for u in units}

    def run(self, inputs: list[Table], ctx: RunContext) -> Table:
        # A whole-table step, not a per-sample cached one: counting is cheaper than reading a
        # cache row back, and a pool of millions would otherwise write millions of rows.
        (table,) = inputs
        tok = _tokenizer(self.params.tokenizer) if self.params.tokenizer else None
        units = ("chars", "words", "tokens") if tok is not None else ("chars", "words")
        out: dict[str, np.ndarray | PackedInts] = {}
        totals = {u: np.zeros(len(table), np.int64) for u in units}
        for p in PARTS:
            parts: dict[str, list[np.ndarray]] = {u: [] for u in units}
            arrow = table.arrow_blocks(p, ctx.settings.batch_rows) if tok is None else None
            if arrow is not None:  # text held in Arrow: count in C++, no Python string per row
                for arr in arrow:
                    parts["chars"].append(char_counts(arr))
                    parts["words"].append(word_counts(arr))
            else:
                for block in table.blocks(p, ctx.settings.batch_rows):
                    texts = block.tolist() if isinstance(block, np.ndarray) else list(block)
                    parts["chars"].append(np.fromiter(map(len, texts), np.int64, len(texts)))
                    parts["words"].append(np.fromiter((len(t.split()) for t in texts), np.int64, len(texts)))
                    if tok is not None:
                        parts["tokens"].append(_token_counts(tok, texts))
            for u in units:
                counts = np.concatenate(parts[u]) if parts[u] else np.zeros(0, np.int64)
                totals[u] += counts
                # Held narrow (8 to 32 bits a count), read back as int64: a pool of millions of rows.
                out[f"{p}_{u}"] = PackedInts.of(counts)
        for u in units:
            out[f"total_{u}"] = PackedInts.of(totals[u])
        return table.with_columns(out)


def _token_counts(tok: Any, texts: list[str]) -> np.ndarray:
    ids = tok(texts, add_special_tokens=False)["input_ids"] if texts else []
    return np.fromiter((len(x) if t else 0 for x, t in zip(ids, texts)), np.int64, len(texts))


_TOKENIZERS: dict[str, Any] = {}


def _tokenizer(name: str):
    if name not in _TOKENIZERS:
        try:
            from transformers import AutoTokenizer
        except ImportError as e:  # pragma: no cover - depends on the install
            raise RuntimeError("token counts need the models extra: pip install 'dslrun[models]'") from e
        from dslrun.runtime.models.resident import resolve

        # An alias, folder or .gguf resolves as for model operators (offline, converted once); a hub
        # id fetches only the tokenizer files, not the weights.
        source = str(resolve(name, "causal-lm").path) if _local(name) else name
        _TOKENIZERS[name] = AutoTokenizer.from_pretrained(source)
    return _TOKENIZERS[name]


def _local(name: str) -> bool:
    from dslrun.runtime.models.resolve import ALIASES

    return name in ALIASES or name.endswith(".gguf") or Path(name).expanduser().exists()
