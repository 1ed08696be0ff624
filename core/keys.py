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
from json.encoder import encode_basestring as _json_str  # what json.dumps uses without ensure_ascii
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dslrun.core.params import ColumnName, FieldKind, KeyedWhenSet, NoCache, field_kind, marked

if TYPE_CHECKING:
    from dslrun.operators.base import CachedOperator


def normalise(text: str) -> str:
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n")).strip()


def sample_id(messages: list[dict[str, str]], alpaca: tuple[str, str, str] | None = None) -> str:
    """The first 16 hex digits of the SHA-256 of the sample's normalised text as compact,
    key-sorted JSON (``json.dumps(payload, ensure_ascii=False, separators=(",", ":"),
    sort_keys=True)``). The JSON is put together here from the strings' JSON encodings,
    byte for byte what ``json.dumps`` writes (tests/test_keys.py checks it on random text):
    a pool of millions computes one id per row, and ``json.dumps`` was most of loading's time."""
    if alpaca is not None:  # keys in sorted order: input, instruction, output
        blob = (f'{{"input":{_json_str(normalise(alpaca[1]))},"instruction":{_json_str(normalise(alpaca[0]))},'
                f'"output":{_json_str(normalise(alpaca[2]))}}}')
    else:
        blob = "[" + ",".join(f"[{_json_str(m['role'])},{_json_str(normalise(m['content']))}]"
                              for m in messages) + "]"
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def alpaca_sample_ids(instructions: list[str], inputs: list[str], outputs: list[str]) -> np.ndarray:
    """``sample_id`` of many Alpaca samples (an object array of ids): the same text, the loop
    kept tight because a pool of millions computes one per row."""
    sha, norm, enc = hashlib.sha256, normalise, _json_str
    ids = [sha(f'{{"input":{enc(norm(b))},"instruction":{enc(norm(a))},"output":{enc(norm(c))}}}'
               .encode()).hexdigest()[:16] for a, b, c in zip(instructions, inputs, outputs)]
    out = np.empty(len(ids), dtype=object)
    out[:] = ids
    return out


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


def cache_params(op: CachedOperator) -> dict[str, Any]:
    """The parameters that change what ``op`` computes, canonical.

    Left out: ``NoCache`` fields (how, not what), output paths, ``ColumnName`` fields
    (where a result goes), and ``KeyedWhenSet`` fields at their default (entries cached
    before the field existed). An input file enters by the SHA-256 of its content, never
    by its path, so the same recipe in a moved or re-cloned folder finds its scores.
    """
    params = op.params
    cls = type(params)
    out = {}
    for name in cls.model_fields:
        if marked(cls, name, NoCache) or marked(cls, name, ColumnName):
            continue
        kind = field_kind(cls, name)
        if kind == FieldKind.OUTPUT_PATH:
            continue
        value = params.model_dump(mode="json", include={name})[name]
        if marked(cls, name, KeyedWhenSet) and getattr(params, name) == cls.model_fields[name].get_default():
            continue
        out[name] = file_digest(value) if kind == FieldKind.INPUT_PATH else value
    return out


def file_digest(value: Any) -> Any:
    """``sha256:<hex>`` of a file's content (a list of paths: each; a folder: its files by
    relative name); None stays None."""
    if value is None:
        return None
    if isinstance(value, list):
        return [file_digest(v) for v in value]
    path = Path(value)
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(x for x in path.rglob("*") if x.is_file()):
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
            _hash_file(h, f)
    elif path.is_file():
        _hash_file(h, path)
    else:  # checked at compile time; a file gone since then keys by its name
        return f"missing:{path.name}"
    return "sha256:" + h.hexdigest()


def _hash_file(h: Any, path: Path) -> None:
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def node_fingerprint(op: CachedOperator) -> str:
    return fingerprint(op.name, op.version, cache_params(op), op.model_identity())


def stored_names(op: CachedOperator) -> dict[str, str]:
    """Produced column -> the name its value is cached under: the name it has when every
    ``ColumnName`` field keeps its default (so two steps that differ only in the column they
    write share their cache entries). Identity for operators without such a field."""
    cls = type(op.params)
    names = [k for k in cls.model_fields if marked(cls, k, ColumnName)]
    if not names:
        return {}
    defaults = {k: cls.model_fields[k].get_default(call_default_factory=True) for k in names}
    if all(getattr(op.params, k) == v for k, v in defaults.items()):
        return {}
    plain = type(op)(op.params.model_copy(update=defaults))
    actual, stored = list(op.output_columns([{}])), list(plain.output_columns([{}]))
    return {a: s for a, s in zip(actual, stored) if a != s}


def rename(values: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """``values`` with its keys renamed by ``names`` (a stored_names map, or its inverse)."""
    return {names.get(c, c): v for c, v in values.items()} if names else dict(values)
