"""Hypothesis strategies for specs in both spellings: near-valid ones, then mangled.

A spec is built from the operators' real parameter names (so many compile or nearly compile),
values of every kind including hostile ones (huge numbers, deep nesting, escapes, tags,
aliases), and then a few character-level edits from an alphabet of troublemakers. The
point is the mix: most examples reach the compiler, and the rest hit the lexers' corners.

Specs are written by a ``random.Random`` seeded with the one integer hypothesis draws: one
draw per example instead of hundreds (hypothesis records every draw) keeps generation at a
fraction of a millisecond, so the default run can afford thousands. The price is shrinking:
hypothesis reports the failing spec's text as generated, not a minimal one.
"""

from __future__ import annotations

import json
import random

import yaml
from hypothesis import strategies as st

from dslrun.operators import registry

OPS = sorted(registry.names())
NAMES = ["pool", "kept", "x", "score", "a_b", "where", "by", "engine", "limit", "_", "in", "not", "output"]
TROUBLE = list("()[]{},:=#\"'\\$-+*/%<>!&|~`\t\n\r\x00\x0b\x85\u2028\ufeff\U0001f600") + [
    "not ", " in ", "**", "//", "1e999", "9" * 120, "null", "true", '"', "\\u12", "\\x", "#", "\n---\n",
    "!!python/name:os.system ", "!!timestamp ", "!foo ", "&a ", "*a", "<<: ", "%YAML 1.1\n", "? ", "- ",
]
NUMBERS = ["1e999", "-1e999", "0x1F", "1_000", ".5", "5.", "1e", "0b101", "9" * 101, "9223372036854775808"]
STRINGS = ['"\\q"', "'it\\'s'", '"\\ud800"', '""', '"pool.json"', '"../x.json"', '"/etc/passwd"']
EXPRS = ["score >= 4.5", "not x", "len(output)", "[1, 2]", "$pool", "$$x", "a +", "score in [1, 2]", "-(-1)"]
BINARY = ["+", "-", "*", "/", "//", "%", "**", "==", "<", ">=", "and", "or", "in", "not in"]


def _int(r: random.Random) -> int:
    return r.randint(-(2**70), 2**70) if r.random() < 0.05 else r.randint(-10, 1000)


def _leaf(r: random.Random) -> str:
    k = r.randrange(7)
    if k == 0:
        return str(_int(r))
    if k == 1:
        return repr(r.uniform(-1e6, 1e6)) if r.random() < 0.9 else r.choice(NUMBERS)
    if k == 2:
        return json.dumps("".join(chr(r.randrange(0x20, 0x3000)) for _ in range(r.randrange(8))))
    if k == 3:
        return r.choice(STRINGS)
    if k == 4:
        return r.choice(["true", "false", "null"])
    return ("$" if k == 5 else "") + r.choice(NAMES)


def sel_expr(r: random.Random, depth: int = 0) -> str:
    if depth > 3 or r.random() < 0.45:
        return _leaf(r)
    k = r.randrange(7)
    sub = [sel_expr(r, depth + 1) for _ in range(r.randrange(4))]
    if k == 0:
        return "[" + ", ".join(sub) + "]"
    if k == 1:
        return "{" + ", ".join(f"{r.choice(NAMES)}: {v}" for v in sub) + "}"
    if k == 2:
        return f"{r.choice(NAMES)}({', '.join(sub)})"
    if k == 3:
        op = r.choice(["not ", "-", "("])
        return op + sel_expr(r, depth + 1) + (")" if op == "(" else "")
    if k == 4:
        n = r.choice([1, 2, 3, 5, 30, 70])
        return "[" * n + sel_expr(r, depth + 1) + "]" * n
    return f"{sel_expr(r, depth + 1)} {r.choice(BINARY)} {sel_expr(r, depth + 1)}"


def _keys(r: random.Random, op: str) -> list[str]:
    cls = registry.get(op)
    fields = list(cls.params_type.model_fields) if cls else []
    pool = fields + NAMES[:3] if fields else NAMES
    return list(dict.fromkeys(r.choice(pool) for _ in range(r.randrange(5))))


def make_sel(r: random.Random) -> str:
    lines, steps = [], []
    for _ in range(r.randrange(4)):
        lines.append(f"param {r.choice(NAMES)} = {sel_expr(r)}")
    if r.random() < 0.3:
        lines.append(f"{r.choice(['engine', 'replicas', 'nope'])}: {sel_expr(r)}")
    for i in range(r.randrange(5)):
        op = r.choice([*OPS, "nope"])
        inputs = [r.choice(steps) for _ in range(r.randrange(3))] if steps else []
        args = ", ".join([*inputs, *(f"{k}: {sel_expr(r)}" for k in _keys(r, op))])
        steps.append(f"s{i}")
        lines.append(f"s{i} = {op}({args})" if r.random() < 0.6 else f"{op}({args})")
    return mangle(r, "\n".join(lines) + "\n")


def yaml_value(r: random.Random, depth: int = 0):
    if depth > 3 or r.random() < 0.5:
        k = r.randrange(6)
        number = r.choice([1.5, -0.0, 4.5, 0.1, 2.0, 1e300, float("inf"), float("nan")][:6 if r.random() < 0.9 else 8])
        return [None, r.random() < 0.5, _int(r), number,
                "".join(chr(r.randrange(0x20, 0x3000)) for _ in range(r.randrange(8))), r.choice(EXPRS)][k]
    if r.random() < 0.5:
        return [yaml_value(r, depth + 1) for _ in range(r.randrange(4))]
    return {r.choice(NAMES): yaml_value(r, depth + 1) for _ in range(r.randrange(4))}


def make_yaml(r: random.Random) -> str:
    doc: dict[str, object] = {}
    if r.random() < 0.5:
        doc["params"] = {r.choice(NAMES): yaml_value(r) for _ in range(r.randrange(4))}
    if r.random() < 0.3:
        doc[r.choice(["engine", "address", "nope"])] = yaml_value(r)
    steps: list[dict[str, object]] = []
    for i in range(r.randrange(5)):
        op = r.choice([*OPS, "nope"])
        step: dict[str, object] = {"op": op, "name": f"s{i}"}
        if i and r.random() < 0.5:
            step["input"] = f"s{r.randrange(i)}"
        for k in _keys(r, op):
            step[k] = yaml_value(r) if r.random() < 0.7 else sel_expr(r)
        steps.append(step)
    if steps or r.random() < 0.5:
        doc["steps"] = steps
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=r.random() < 0.5,
                          default_flow_style=r.choice([False, None, True]))
    return mangle(r, text)


def mangle(r: random.Random, text: str) -> str:
    """Up to three edits: insert a troublemaker, delete a slice, or repeat one."""
    for _ in range(r.choice([0, 0, 0, 1, 1, 2, 3])):
        at = r.randrange(len(text) + 1)
        kind = r.randrange(3)
        if kind == 0:
            text = text[:at] + r.choice(TROUBLE) + text[at:]
        elif kind == 1:
            text = text[:at] + text[at + r.randrange(1, 9):]
        else:
            end = min(len(text), at + r.randrange(1, 7))
            text = text[:at] + text[at:end] * r.choice([2, 3, 70, 200]) + text[end:]
    return text


SEEDS = st.integers(0, 2**64 - 1)


def sel_spec() -> st.SearchStrategy[str]:
    return SEEDS.map(lambda seed: make_sel(random.Random(seed)))


def yaml_spec() -> st.SearchStrategy[str]:
    return SEEDS.map(lambda seed: make_yaml(random.Random(seed)))
