"""Every key dslrun derives: sample ids, canonical parameters, and step fingerprints.

A sample's id is a hash of its normalised content, so the same sample has the same id
in any pool, file or order. A step's fingerprint names what it computes: operator name,
code version, the parameters that change results (canonical JSON), and the identity of
the model it uses. The score cache keys every value by (fingerprint, sample id).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dslrun.core.params import FieldKind, NoCache, field_kind

if TYPE_CHECKING:
    from dslrun.operators.base import SampleOperator


def normalise(text: str) -> str:
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n")).strip()


def sample_id(messages: list[dict[str, str]], alpaca: tuple[str, str, str] | None = None) -> str:
    if alpaca is not None:
        payload: Any = {"instruction": normalise(alpaca[0]), "input": normalise(alpaca[1]),
                        "output": normalise(alpaca[2])}
    else:
        payload = [[m["role"], normalise(m["content"])] for m in messages]
    blob = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_jsonable)


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "model_dump"):
        return x.model_dump()
    raise TypeError(f"cannot canonicalise {type(x).__name__}")


def fingerprint(op: str, version: str, params: Mapping[str, Any], model: str = "") -> str:
    payload = canonical({"op": op, "version": version, "params": params, "model": model})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]


def cache_params(op: SampleOperator) -> dict[str, Any]:
    params = op.params
    out = {}
    for name, f in type(params).model_fields.items():
        if any(isinstance(m, NoCache) or m is NoCache for m in f.metadata):
            continue
        if field_kind(type(params), name) == FieldKind.OUTPUT_PATH:
            continue
        out[name] = params.model_dump(mode="json", include={name})[name]
    return out


def node_fingerprint(op: SampleOperator) -> str:
    return fingerprint(op.name, op.version, cache_params(op), op.model_identity())
