"""How a cached value is written: JSON, numpy arrays as typed base64 (a float16 vector costs
2 bytes a dimension). Every store, and the Ray engine's results on their way to the driver,
go through it, so a value reads back the same whichever path it took."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np


def encode(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_encode_default)


def _encode_default(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        data = base64.b64encode(np.ascontiguousarray(x).tobytes()).decode("ascii")
        return {"__nd__": [x.dtype.str, list(x.shape), data]}
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"cannot cache a {type(x).__name__}")


def _decode_hook(d: dict) -> Any:
    nd = d.get("__nd__")
    if nd is not None and len(d) == 1:
        dtype, shape, data = nd
        return np.frombuffer(base64.b64decode(data), dtype=np.dtype(dtype)).reshape(shape)
    return d


def decode(text: str) -> Any:
    return json.loads(text, object_hook=_decode_hook)
