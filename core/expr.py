"""The expression language: static typing over columns, and vectorised evaluation.

Expressions are IR value trees (``dsl/ir.py``) evaluated with numpy over whole
columns: ``quality * complexity``, ``ifd < 1 and len(output) > 10``,
``zscore(reward) + rank_pct(ifd)``. Nothing here calls Python ``eval``.
Errors (a missing column, a type mismatch, division by zero) are ``SpecError``s
pointing at the expression in the spec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dslrun.core.errors import Collector, Span, SpecError, did_you_mean
from dslrun.core.render import expr_text
from dslrun.core.values import Binary, Call, DictV, ListV, Lit, Param, Ref, Unary, Value, walk

NUM = ("int", "float", "bool")


class ExprError(SpecError):
    """An expression failed on the data (it passed the static checks)."""


def columns_used(v: Value) -> list[Ref]:
    return [n for n in walk(v) if isinstance(n, Ref)]


# ---- functions ----

@dataclass(frozen=True)
class Func:
    arity: tuple[int, int]
    result: Callable[[list[str]], str]
    impl: Callable[..., Any] | None  # None: computed by a case of its own in _call
    arg_kinds: tuple[tuple[str, ...], ...] = ()  # per argument: allowed types (last repeats)
    doc: str = ""


def _len(x):
    return np.fromiter((0 if v is None else len(v) for v in np.asarray(x, dtype=object).ravel()),
                       dtype=np.int64, count=np.size(x))


def _zscore(x):
    x = np.asarray(x, dtype=np.float64)
    sd = np.nanstd(x)
    return np.zeros_like(x) if sd == 0 or not np.isfinite(sd) else (x - np.nanmean(x)) / sd


def _rank_pct(x):
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    sx = x[order]
    i = 0
    while i < len(x):  # average rank over ties, as pandas' rank(pct=True)
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks / max(len(x), 1)


def _rrf(*columns, k: float = 60.0):
    """Reciprocal-rank fusion (Cormack et al., SIGIR 2009): sum of 1 / (k + rank) over the columns.

    Ranks are 1-based, highest value first; tied values share the best rank so the
    result does not depend on pool order; a missing value adds nothing.
    """
    n = max((np.size(c) for c in columns), default=0)
    total = np.zeros(n, dtype=np.float64)
    for col in columns:
        x = np.broadcast_to(np.asarray(col, dtype=np.float64), (n,))
        present = ~np.isnan(x)
        v = x[present]
        # competition rank: 1 + number of strictly larger values
        ranks = 1 + np.searchsorted(np.sort(-v), -v, side="left")
        total[present] += 1.0 / (k + ranks)
    return total


def _dot(a, b, n: int):
    """Per row: sum of a[i] * b[i] over two equal-length lists (DEITA's evol score over
    turns); missing where either list is missing, holds a missing item, or lengths differ."""
    out = np.full(n, np.nan)
    for i, (x, y) in enumerate(zip(_rows(a, n), _rows(b, n))):
        if x is None or y is None or len(x) != len(y) or any(_is_null(v) for v in (*x, *y)):
            continue
        out[i] = float(sum(float(u) * float(v) for u, v in zip(x, y)))
    return out


def _num(*_):
    return "float"


def _same(types):
    return "float" if "float" in types else "int"


FUNCTIONS: dict[str, Func] = {
    "len": Func((1, 1), lambda t: "int", _len, (("str", "list", "vector"),), "characters of a text, items of a list"),
    "log": Func((1, 1), _num, np.log, (NUM,), "natural logarithm (argument must be > 0)"),
    "log1p": Func((1, 1), _num, np.log1p, (NUM,), "log(1 + x)"),
    "exp": Func((1, 1), _num, np.exp, (NUM,), "e to the power x"),
    "sqrt": Func((1, 1), _num, np.sqrt, (NUM,), "square root (argument must be >= 0)"),
    "abs": Func((1, 1), lambda t: t[0], np.abs, (NUM,), "absolute value"),
    "min": Func((2, 2), _same, np.minimum, (NUM,), "elementwise minimum of two values"),
    "max": Func((2, 2), _same, np.maximum, (NUM,), "elementwise maximum of two values"),
    "clip": Func((3, 3), _num, np.clip, (NUM,), "clip(x, low, high)"),
    "round": Func((1, 2), _num, lambda x, d=0: np.round(x, int(np.asarray(d).ravel()[0])), (NUM,), "round(x, digits)"),
    "zscore": Func((1, 1), _num, _zscore, (NUM,), "(x - mean) / std over the column (0 when std is 0)"),
    "rank_pct": Func((1, 1), _num, _rank_pct, (NUM,), "percentile rank in (0, 1], ties averaged"),
    "rrf": Func((1, 16), _num, _rrf, (NUM,), "rrf(a, b, ...): reciprocal-rank fusion, sum of 1/(60 + rank), "
                                         "highest first"),
    "safe_div": Func((3, 3), _num, None, (NUM,), "safe_div(a, b, default): a / b, default where b == 0"),
    "where": Func((3, 3), lambda t: t[1] if t[1] == t[2] else "float", None, (("bool",), ("any",)),
                  "where(condition, a, b): a where the condition holds, else b"),
    "is_null": Func((1, 1), lambda t: "bool", None, (("any",),), "true where the value is missing"),
    "coalesce": Func((2, 2), lambda t: t[0], None, (("any",),), "coalesce(x, default): default where x is missing"),
    "lower": Func((1, 1), lambda t: "str", None, (("str",),), "lower-case text"),
    "contains": Func((2, 2), lambda t: "bool", None, (("str",),), "contains(text, part): substring test"),
    "words": Func((1, 1), lambda t: "int", None, (("str",),), "number of whitespace-separated words"),
    "dot": Func((2, 2), _num, None, (("list",),), "dot(a, b): sum of a[i] * b[i] over two lists per row "
                                                  "(e.g. per-turn complexity × quality, DEITA's evol score)"),
}


# ---- static typing ----

def _lit_type(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int):
        return "int"
    if isinstance(x, float):
        return "float"
    return "str"


def infer(v: Value, columns: dict[str, str], errors: Collector) -> str:
    """The type of an expression over ``columns``; problems go to ``errors``."""
    if isinstance(v, Lit):
        return _lit_type(v.value)
    if isinstance(v, Param):
        errors.add(v.span or Span("<expr>"), f"parameter `${v.name}` was not substituted")
        return "any"
    if isinstance(v, Ref):
        if v.name not in columns:
            errors.add(v.span or Span("<expr>"), f"unknown column `{v.name}`",
                       did_you_mean(v.name, columns) or "no step before this one produces it")
            return "any"
        return columns[v.name]
    if isinstance(v, ListV):
        for i in v.items:
            infer(i, columns, errors)
        return "list"
    if isinstance(v, DictV):
        errors.add(v.span or Span("<expr>"), "a mapping is not allowed in an expression")
        return "any"
    if isinstance(v, Call):
        f = FUNCTIONS.get(v.func)
        if f is None:
            errors.add(v.span or Span("<expr>"), f"unknown function `{v.func}`", did_you_mean(v.func, FUNCTIONS))
            return "any"
        lo, hi = f.arity
        if not lo <= len(v.args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            errors.add(v.span or Span("<expr>"), f"`{v.func}` takes {want} argument(s), got {len(v.args)}", f.doc)
        types = [infer(a, columns, errors) for a in v.args]
        for pos, (a, t) in enumerate(zip(v.args, types)):
            allowed = f.arg_kinds[min(pos, len(f.arg_kinds) - 1)] if f.arg_kinds else ("any",)
            if "any" not in allowed and t not in allowed and t not in ("any", "null"):
                errors.add(a.span or v.span or Span("<expr>"),
                           f"`{v.func}` expects {' or '.join(allowed)} here, got {t}", f.doc)
        return f.result(types) if len(types) >= lo else "any"
    if isinstance(v, Unary):
        t = infer(v.operand, columns, errors)
        if v.op == "not":
            _expect(v.operand, t, ("bool",), "`not` needs a true/false value", errors)
            return "bool"
        _expect(v.operand, t, NUM, "`-` needs a number", errors)
        return "int" if t == "bool" else t
    assert isinstance(v, Binary)
    lt, rt = infer(v.left, columns, errors), infer(v.right, columns, errors)
    op = v.op
    if op in ("and", "or"):
        _expect(v.left, lt, ("bool",), f"`{op}` needs true/false values", errors)
        _expect(v.right, rt, ("bool",), f"`{op}` needs true/false values", errors)
        return "bool"
    if op in ("in", "not in"):
        if rt not in ("list", "str", "any"):
            errors.add(v.right.span or v.span or Span("<expr>"), f"`{op}` needs a list or text on its right, got {rt}")
        return "bool"
    if op in ("==", "!="):
        return "bool"
    if op in ("<", "<=", ">", ">="):
        if {lt, rt} <= {"str", "any"} or (lt in NUM + ("any",) and rt in NUM + ("any",)):
            return "bool"
        errors.add(v.span or Span("<expr>"), f"cannot compare {lt} with {rt} using `{op}`",
                   "compare numbers with numbers, text with text")
        return "bool"
    for side, t in ((v.left, lt), (v.right, rt)):
        _expect(side, t, NUM, f"`{op}` needs numbers, got {t}", errors,
                hint="use len(...) for the length of a text" if t == "str" else None)
    if op == "/" or "float" in (lt, rt):
        return "float"
    return "int"


def _expect(node: Value, t: str, allowed: tuple[str, ...], msg: str, errors: Collector, hint=None) -> None:
    if t not in allowed and t not in ("any", "null"):
        errors.add(node.span or Span("<expr>"), msg, hint)


# ---- evaluation ----

def _err(node: Value, msg: str, hint: str | None = None) -> ExprError:
    return ExprError(node.span or Span("<expr>"), msg, hint)


def _text(node: Value) -> str:
    return expr_text(node)


def evaluate(v: Value, table, ids: Any = None) -> np.ndarray:
    """Evaluate over a table (anything with ``column(name)`` and ``len()``); returns one value per row."""
    n = len(table)
    if ids is None and hasattr(table, "value") and "id" in table:
        ids = _IdsOf(table)
    out = _eval(v, table, n, ids)
    if np.ndim(out) == 0 or (isinstance(out, np.ndarray) and out.shape[:1] != (n,)):
        out = np.full(n, out, dtype=object if isinstance(out, str) else None)
    return out


class _IdsOf:
    """A table's ids for an error message: one is read when a row is named, not the whole column
    (a pool's ids may be held compactly, runtime/data/id_column.py)."""

    def __init__(self, table):
        self.table = table

    def __getitem__(self, row: int) -> str:
        return self.table.value("id", row)


def _bad_rows(mask: np.ndarray, ids) -> str:
    k = int(np.count_nonzero(mask))
    first = int(np.flatnonzero(mask)[0])
    where = f"sample {ids[first]}" if ids is not None else f"row {first}"
    return f"{k} row{'s' if k != 1 else ''} (first: {where})"


def _eval(v: Value, table, n: int, ids) -> Any:
    if isinstance(v, Lit):
        return v.value
    if isinstance(v, Ref):
        try:
            return table.column(v.name)
        except KeyError:
            raise _err(v, f"unknown column `{v.name}`", did_you_mean(v.name, table.column_names)) from None
    if isinstance(v, ListV):
        return [_eval(i, table, n, ids) for i in v.items]
    if isinstance(v, Unary):
        x = _eval(v.operand, table, n, ids)
        return np.logical_not(x) if v.op == "not" else np.negative(x)
    if isinstance(v, Call):
        return _call(v, table, n, ids)
    if isinstance(v, Binary):
        return _binary(v, table, n, ids)
    raise _err(v, f"cannot evaluate {type(v).__name__} here")


def _binary(v: Binary, table, n: int, ids) -> Any:
    a, b = _eval(v.left, table, n, ids), _eval(v.right, table, n, ids)
    op = v.op
    if op in ("and", "or"):
        return (np.logical_and if op == "and" else np.logical_or)(a, b)
    if op in ("in", "not in"):
        res = _membership(v, a, b, n)
        return np.logical_not(res) if op == "not in" else res
    if op in ("/", "//", "%"):
        denom = np.asarray(b, dtype=np.float64)
        zero = denom == 0
        if np.any(zero):
            mask = np.broadcast_to(zero, (n,)) if zero.ndim == 0 else zero
            raise _err(v, f"division by zero in `{_text(v)}`: {_bad_rows(mask, ids)}",
                       f"use safe_div({_text(v.left)}, {_text(v.right)}, 0) or filter those rows first")
    try:
        with np.errstate(all="ignore"):
            fn = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide,
                  "//": np.floor_divide, "%": np.mod, "**": np.power, "==": np.equal, "!=": np.not_equal,
                  "<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}[op]
            if op == "**":
                a = np.asarray(a, dtype=np.float64)
            return fn(a, b)
    except TypeError as e:
        raise _err(v, f"type mismatch in `{_text(v)}`: {e}") from None


def _membership(v: Binary, a, b, n: int) -> np.ndarray:
    if isinstance(b, list):  # literal list
        return np.isin(np.asarray(a, dtype=object), np.asarray(b, dtype=object))
    a_arr = np.broadcast_to(np.asarray(a, dtype=object), (n,)) if np.ndim(a) == 0 else np.asarray(a, dtype=object)
    b_arr = np.asarray(b, dtype=object)
    return np.fromiter((x in y if y is not None else False for x, y in zip(a_arr, b_arr)), dtype=bool, count=n)


def _call(v: Call, table, n: int, ids) -> Any:
    args = [_eval(a, table, n, ids) for a in v.args]
    name = v.func
    if name == "log" or name == "sqrt":
        x = np.asarray(args[0], dtype=np.float64)
        bad = x <= 0 if name == "log" else x < 0
        if np.any(bad):
            mask = np.broadcast_to(bad, (n,)) if bad.ndim == 0 else bad
            cond = "<= 0" if name == "log" else "< 0"
            raise _err(v, f"`{name}` of a value {cond} in `{_text(v)}`: {_bad_rows(mask, ids)}",
                       "log1p(x) handles zeros; filter or clip the rows first")
    if name == "safe_div":
        num, den, default = (np.asarray(x, dtype=np.float64) for x in args)
        with np.errstate(all="ignore"):
            return np.where(den == 0, default, num / np.where(den == 0, 1, den))
    if name == "where":
        return np.where(np.asarray(args[0], dtype=bool), args[1], args[2])
    if name == "is_null":
        return np.fromiter((_is_null(x) for x in _rows(args[0], n)), dtype=bool, count=n)
    if name == "coalesce":
        default = args[1]
        return np.array([default if _is_null(x) else x for x in _rows(args[0], n)], dtype=object if isinstance(default, str) else None)
    if name == "lower":
        return np.array([None if x is None else str(x).lower() for x in _rows(args[0], n)], dtype=object)
    if name == "contains":
        part = args[1]
        parts = _rows(part, n)
        return np.fromiter((x is not None and str(p) in x for x, p in zip(_rows(args[0], n), parts)), dtype=bool, count=n)
    if name == "dot":
        return _dot(args[0], args[1], n)
    if name == "words":
        return np.fromiter((0 if x is None else len(str(x).split()) for x in _rows(args[0], n)), dtype=np.int64, count=n)
    impl = FUNCTIONS[name].impl
    assert impl is not None, f"`{name}` has neither an impl nor a case of its own"
    with np.errstate(all="ignore"):
        return impl(*args)


def _rows(x, n: int):
    if isinstance(x, np.ndarray) and x.shape[:1] == (n,):
        return x
    return [x] * n


def _is_null(x) -> bool:
    return x is None or (isinstance(x, float) and np.isnan(x))
