"""Value trees back to .sel text, with minimal parentheses (``dslrun fmt``, error messages)."""

from __future__ import annotations

import json
import re

from dslrun.core.values import Binary, Call, DictV, ListV, Lit, Param, Ref, Unary, Value

_PREC = {"or": 1, "and": 2, "not": 3, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4,
         "in": 4, "not in": 4, "+": 5, "-": 5, "*": 6, "/": 6, "//": 6, "%": 6, "neg": 7, "**": 8}
_ATOM = 9
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
KEYWORDS = {"param", "true", "false", "null", "and", "or", "not", "in"}


def _prec(v: Value) -> int:
    if isinstance(v, Binary):
        return _PREC[v.op]
    if isinstance(v, Unary):
        return _PREC["not"] if v.op == "not" else _PREC["neg"]
    if isinstance(v, Lit) and isinstance(v.value, (int, float)) and not isinstance(v.value, bool) and v.value < 0:
        return _PREC["neg"]
    return _ATOM


def _number(x: int | float) -> str:
    return repr(x) if isinstance(x, float) else str(x)


def expr_text(v: Value) -> str:
    """Render a value in .sel syntax."""
    if isinstance(v, Lit):
        x = v.value
        if x is None:
            return "null"
        if isinstance(x, bool):
            return "true" if x else "false"
        if isinstance(x, (int, float)):
            return _number(x)
        return json.dumps(x, ensure_ascii=False)
    if isinstance(v, Param):
        return f"${v.name}"
    if isinstance(v, Ref):
        return v.name
    if isinstance(v, ListV):
        return "[" + ", ".join(expr_text(i) for i in v.items) + "]"
    if isinstance(v, DictV):
        def key(k: str) -> str:
            return k if _NAME.match(k) and k not in KEYWORDS else json.dumps(k, ensure_ascii=False)
        return "{" + ", ".join(f"{key(k)}: {expr_text(i)}" for k, i in v.items) + "}"
    if isinstance(v, Call):
        return f"{v.func}(" + ", ".join(expr_text(a) for a in v.args) + ")"
    if isinstance(v, Unary):
        inner = expr_text(v.operand)
        need = _PREC["not"] if v.op == "not" else _PREC["neg"]
        if _prec(v.operand) < need:
            inner = f"({inner})"
        return f"not {inner}" if v.op == "not" else f"-{inner}"
    if isinstance(v, Binary):
        p = _PREC[v.op]
        left, right = expr_text(v.left), expr_text(v.right)
        if v.op == "**":
            if _prec(v.left) < _ATOM:
                left = f"({left})"
            if _prec(v.right) < _PREC["neg"]:
                right = f"({right})"
        else:
            comparison = p == 4
            if _prec(v.left) < p or (comparison and _prec(v.left) == p):
                left = f"({left})"
            if _prec(v.right) <= p:
                right = f"({right})"
        return f"{left} {v.op} {right}"
    raise TypeError(f"cannot render {v!r}")
