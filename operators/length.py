"""``length``: character, word and (optionally) token counts of each part of a sample."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from dslrun.core.columns import INT, Columns
from dslrun.core.context import RunContext
from dslrun.core.cost import Cost
from dslrun.core.params import Params
from dslrun.operators.base import SampleOperator
from dslrun.operators.registry import register
from dslrun.runtime.data.table import Table

PARTS = ("instruction", "input", "output")


class LengthParams(Params):
    tokenizer: str | None = Field(
        None, description="the tokenizer of a model (alias, local folder, .gguf or hub id) for *_tokens columns; "
                          "needs dslrun[models]")


@register
class Length(SampleOperator[LengthParams]):
    """<part>_chars and <part>_words for instruction, input, output and total; <part>_tokens with a tokenizer."""

    name = "length"
    version = "1"
    columns_read = PARTS

    def output_columns(self, inputs: list[Columns]) -> Columns:
        cols = dict(inputs[0])
        cols.update(self.columns())
        return cols

    def columns(self) -> Columns:
        units = ["chars", "words"] + (["tokens"] if self.params.tokenizer else [])
        return {f"{p}_{u}": INT for p in (*PARTS, "total") for u in units}

    def model_identity(self) -> str:
        if not self.params.tokenizer:
            return ""
        from dslrun.runtime.models.resident import identity

        name = self.params.tokenizer
        return identity(name, "causal-lm") if _local(name) else name

    def estimate(self, n_samples: int) -> Cost:
        return Cost(samples=n_samples)

    def compute(self, batch: Table, ctx: RunContext) -> list[Mapping[str, Any]]:
        tok = _tokenizer(self.params.tokenizer) if self.params.tokenizer else None
        out: list[Mapping[str, Any]] = []
        cols = {p: batch.column(p) for p in PARTS}
        for i in range(len(batch)):
            row: dict[str, int] = {}
            for p in PARTS:
                text = cols[p][i]
                row[f"{p}_chars"] = len(text)
                row[f"{p}_words"] = len(text.split())
                if tok is not None:
                    row[f"{p}_tokens"] = len(tok(text, add_special_tokens=False)["input_ids"]) if text else 0
            for u in ("chars", "words", "tokens"):
                if f"output_{u}" in row:
                    row[f"total_{u}"] = sum(row[f"{p}_{u}"] for p in PARTS)
            out.append(row)
        return out


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
