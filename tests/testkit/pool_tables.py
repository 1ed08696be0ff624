"""Comparing two pool tables column by column (the fast Arrow readers against the per-record path)."""

from __future__ import annotations

import numpy as np


def same_table(a, b):
    assert a.all_columns == b.all_columns
    assert a.meta == b.meta
    for c in a.all_columns:
        x, y = a.column(c), b.column(c)
        assert x.dtype == y.dtype, c
        if x.dtype.kind == "f":
            assert np.array_equal(x, y, equal_nan=True), c
        else:
            assert x.tolist() == y.tolist(), c


def same_quarantine(a, b):
    assert [(q.row, q.reason, q.record) for q in a.quarantined] == [(q.row, q.reason, q.record) for q in b.quarantined]


def mixed_records(rng, n, texts, scores=(1, 2.5, None, 7), bad_rows=False):
    """Alpaca records in random key orders with extra text, number, bool and null fields (some
    only in later rows, one named like a base column); ``bad_rows``: some the per-record path
    quarantines (blank or missing instruction/output, null input)."""
    out = []
    for i in range(n):
        rec = {"instruction": f"q{i} " + rng.choice(texts), "input": rng.choice(["", " ", rng.choice(texts)]),
               "output": f"a{i} " + rng.choice(texts)}
        if i % 3 == 0:
            rec["category"] = rng.choice(texts)
        if i > n // 2:
            rec["late_score"] = rng.choice(scores)
        if i % 5 == 0:
            rec["flag"] = rng.choice([True, False])
        if i % 7 == 0:
            rec["id"] = f"user-{i}"  # a field named like a base column
        if bad_rows:
            if i % 11 == 0:
                rec["nothing"] = None
            if i % 13 == 5:
                rec[rng.choice(["output", "instruction"])] = rng.choice([" ", "\u2028"])
            if i % 17 == 6:
                rec.pop("instruction")
            if i % 19 == 7:
                rec["input"] = None
        keys = list(rec)
        rng.shuffle(keys)
        out.append({k: rec[k] for k in keys})
    return out
