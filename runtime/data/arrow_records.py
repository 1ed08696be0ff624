"""Records (dicts in a pool's own schema) as an Arrow table, for the Python API's results and
``save(format: hf)``."""

from __future__ import annotations

import json
from typing import Any


def records_to_arrow(records: list[Any]) -> Any:
    """Records (dicts in the pool's own schema) as a ``pyarrow.Table``: every field any record
    has, in order of first appearance (missing ones null). A field whose values Arrow cannot
    hold in one column (a number here, a string there) is kept as JSON text."""
    import pyarrow as pa

    names: dict[str, None] = {}
    for r in records:
        names.update(dict.fromkeys(r))
    arrays = {}
    for name in names:
        values = [r.get(name) for r in records]
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            arrays[name] = pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in values])
    return pa.table(arrays) if arrays else pa.table({})


def text_if_mixed(values: list[Any], from_pandas: bool = False) -> Any:
    """``values`` as one Arrow array, or as text where Arrow cannot hold them in one column (a
    number here and a string there, an integer past 64 bits)."""
    import pyarrow as pa

    try:
        return pa.array(values, from_pandas=from_pandas)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())
