"""``.sel`` text → IR. A lark LALR parser with positions, and comments kept as docs.

Comments above a statement (and on its lines) become that statement's ``doc``;
a comment block at the top of the file followed by a blank line is the spec's
``doc``; comments after the last statement are its ``trailer``. That is what
lets ``dslrun fmt`` convert to YAML and back without losing the prose that
cites a method's paper.
"""

from __future__ import annotations

import json
import threading
from functools import cache
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from dslrun.core.errors import Collector, ErrorList, Span, SpecError, register_source
from dslrun.core.values import Binary, Call, DictV, ListV, Lit, Param, Ref, Unary, Value
from dslrun.dsl.doc_comments import attach_docs
from dslrun.dsl.ir import ParamDef, Setting, Spec, Step
from dslrun.dsl.limits import (
    MAX_DEPTH,
    MAX_NODES,
    MAX_NUMBER_CHARS,
    check_size,
    check_tokens,
    number_problem,
    string_problem,
    too_deep,
    too_many,
)

_TOKEN_NAMES = {
    "RPAR": "`)`", "LPAR": "`(`", "COMMA": "`,`", "COLON": "`:`", "EQUAL": "`=`",
    "NAME": "a name", "IDENT": "a name", "STRING": "a string", "NUMBER": "a number",
    "PARAM": "a `$param`", "RSQB": "`]`", "LSQB": "`[`", "LBRACE": "`{`", "RBRACE": "`}`",
    "$END": "end of file", "MINUS": "`-`", "PLUS": "`+`", "PARAM_KW": "`param`", "COMP_OP": "a comparison",
}


_comment_sink = threading.local()


def _collect_comment(tok: Token) -> Token:
    sink = getattr(_comment_sink, "tokens", None)
    if sink is not None:
        sink.append(tok)
    return tok


@cache
def _parser() -> Lark:
    grammar = resources.files("dslrun.dsl").joinpath("grammar.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True,
                start=["start", "expression"], lexer_callbacks={"COMMENT": _collect_comment})


def _span(file: str, meta_or_tok) -> Span:
    if isinstance(meta_or_tok, Token):
        t = meta_or_tok
        return Span(file, t.line or 0, t.column or 0, t.end_line or 0, t.end_column or 0)
    m = meta_or_tok
    if getattr(m, "empty", False):
        return Span(file)
    return Span(file, m.line, m.column, m.end_line, m.end_column)


def unquote(tok: str) -> str:
    body = tok[1:-1]
    if tok[0] == "'":
        body = body.replace("\\'", "'").replace('"', '\\"')
    return json.loads('"' + body + '"')


def parse_number(text: str) -> int | float:
    text = text.replace("_", "")
    if any(c in text for c in ".eE"):
        return float(text)
    return int(text)


class _Build(Transformer):
    def __init__(self, file: str, errors: Collector):
        super().__init__()
        self.file = file
        self.errors = errors

    def _s(self, x) -> Span:
        return _span(self.file, x)

    # ---- statements ----
    def start(self, items):
        return [i for i in items if i is not None]

    def expression(self, items):
        return items[0]

    @v_args(meta=True)
    def param_def(self, meta, items):
        name, value = items
        return ParamDef(name=str(name), default=value, span=self._s(meta))

    @v_args(meta=True)
    def setting(self, meta, items):
        name, value = items
        return Setting(name=str(name), value=value, span=self._s(meta), name_span=self._s(name))

    @v_args(meta=True)
    def assign(self, meta, items):
        target, step = items
        if "-" in target:
            self.errors.add(self._s(target), f"step name `{target}` cannot contain `-`",
                            f"use `{str(target).replace('-', '_')}`")
        return step.model_copy(update={"name": str(target), "span": self._s(meta)})

    def call_stmt(self, items):
        return items[0]

    @v_args(meta=True)
    def call(self, meta, items):
        op_tok, *args = items
        inputs: list[Ref] = []
        kwargs: list[tuple[str, Value]] = []
        arg_spans: dict[str, Span] = {}
        for a in args:
            if a is None:
                continue
            kind, name, value, span = a
            if kind == "pos":
                if kwargs:
                    self.errors.add(span, f"input `{name}` comes after keyword parameters",
                                    "put the input steps first: op(input, key: value)")
                inputs.append(Ref(name=name, span=span))
            else:
                if name in arg_spans:
                    self.errors.add(span, f"parameter `{name}` is given twice")
                arg_spans[name] = span
                kwargs.append((name, value))
        return Step(name=None, op=str(op_tok), inputs=tuple(inputs), args=tuple(kwargs),
                    span=self._s(meta), op_span=self._s(op_tok), arg_spans=arg_spans)

    def kwarg(self, items):
        name, value = items
        return ("kw", str(name), value, self._s(name))

    def posarg(self, items):
        (name,) = items
        return ("pos", str(name), None, self._s(name))

    # ---- expressions ----
    def number(self, items):
        tok = items[0]
        value = parse_number(tok) if len(tok) <= MAX_NUMBER_CHARS else None  # int() of 5,000 digits raises
        problem = number_problem(str(tok), value)
        if problem:
            self.errors.add(self._s(tok), problem, "numbers are 64-bit integers or finite floats")
            value = 0
        return Lit(value=value, span=self._s(tok))

    def string(self, items):
        tok = items[0]
        problem = string_problem(str(tok))
        if problem:
            self.errors.add(self._s(tok), problem, "read long text from a file (e.g. `template_file:`)")
            return Lit(value="", span=self._s(tok))
        try:
            return Lit(value=unquote(tok), span=self._s(tok))
        except json.JSONDecodeError:
            self.errors.add(self._s(tok), "invalid escape sequence in string",
                            'use \\n, \\t, \\", \\\\ or \\uXXXX')
            return Lit(value=str(tok)[1:-1], span=self._s(tok))

    @v_args(meta=True)
    def true(self, meta, _):
        return Lit(value=True, span=self._s(meta))

    @v_args(meta=True)
    def false(self, meta, _):
        return Lit(value=False, span=self._s(meta))

    @v_args(meta=True)
    def null(self, meta, _):
        return Lit(value=None, span=self._s(meta))

    def param(self, items):
        return Param(name=str(items[0])[1:], span=self._s(items[0]))

    def ref(self, items):
        return Ref(name=str(items[0]), span=self._s(items[0]))

    @v_args(meta=True)
    def func(self, meta, items):
        name, *args = items
        return Call(func=str(name), args=tuple(a for a in args if a is not None), span=self._s(meta))

    @v_args(meta=True)
    def list(self, meta, items):
        return ListV(items=tuple(i for i in items if i is not None), span=self._s(meta))

    @v_args(meta=True)
    def dict(self, meta, items):
        pairs = [p for p in items if p is not None]
        seen: set[str] = set()
        for k, _v, span in pairs:
            if k in seen:
                self.errors.add(span, f"key `{k}` is given twice")
            seen.add(k)
        return DictV(items=tuple((k, v) for k, v, _ in pairs), span=self._s(meta))

    def pair(self, items):
        key, value = items
        text = unquote(key) if key.type == "STRING" else str(key)
        return (text, value, self._s(key))

    @v_args(meta=True)
    def binop(self, meta, items):
        left, op, right = items
        return Binary(op=str(op), left=left, right=right, span=self._s(meta))

    @v_args(meta=True)
    def compare(self, meta, items):
        return self.binop(meta, items)

    @v_args(meta=True)
    def in_(self, meta, items):
        return Binary(op="in", left=items[0], right=items[1], span=self._s(meta))

    @v_args(meta=True)
    def not_in(self, meta, items):
        return Binary(op="not in", left=items[0], right=items[1], span=self._s(meta))

    @v_args(meta=True)
    def and_(self, meta, items):
        return Binary(op="and", left=items[0], right=items[1], span=self._s(meta))

    @v_args(meta=True)
    def or_(self, meta, items):
        return Binary(op="or", left=items[0], right=items[1], span=self._s(meta))

    @v_args(meta=True)
    def not_(self, meta, items):
        return Unary(op="not", operand=items[0], span=self._s(meta))

    @v_args(meta=True)
    def neg(self, meta, items):
        _minus, operand = items
        value = operand.value if isinstance(operand, Lit) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return Lit(value=-value, span=self._s(meta))  # fold: -5 is a literal
        return Unary(op="-", operand=operand, span=self._s(meta))


def _check_tree(tree: Tree, file: str) -> None:
    """Depth and size of the parse tree, walked without recursion before anything recurses over it."""
    count = 0
    stack: list[tuple[Tree, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES or depth > MAX_DEPTH:
            at = _span(file, node.meta)
            span = Span(file, at.line, at.col)
            raise ErrorList([too_many(span) if count > MAX_NODES else too_deep(span)])
        stack.extend((c, depth + 1) for c in node.children if isinstance(c, Tree))


def _syntax_error(file: str, text: str, err: UnexpectedInput, expression: bool = False) -> ErrorList:
    line, col = getattr(err, "line", 0) or 0, getattr(err, "column", 0) or 0
    span = Span(file, line, col, line, col + 1)
    if isinstance(err, UnexpectedCharacters):
        pos = err.pos_in_stream
        ch = text[pos] if pos is not None and pos < len(text) else ""
        msg = f"unexpected character {ch!r}"
        hint = "strings need double quotes" if ch.isprintable() and ch not in "()" else None
        if ch in "\"'":
            hint = "this string is not closed on its line (write a line break as \\n)"
    elif isinstance(err, UnexpectedEOF):
        lines = text.splitlines() or [""]
        span = Span(file, len(lines), len(lines[-1]) + 1)
        msg, hint = "unexpected end of file", "a call may be missing its closing `)`"
    else:
        assert isinstance(err, UnexpectedToken)
        tok = err.token
        end = "end of the value" if expression else "end of file"
        shown = end if tok.type == "$END" else f"`{tok}`"
        expected = sorted({_TOKEN_NAMES.get(e, f"`{e.lower()}`") for e in err.expected})
        msg = f"unexpected {shown}"
        hint = "expected " + ", ".join(expected[:8]) if expected else None
        if tok.type == "$END":
            lines = text.splitlines() or [""]
            span = Span(file, len(lines), len(lines[-1]) + 1)
        elif "COMMA" in err.expected and "RPAR" in err.expected:
            hint = "a `,` between parameters, or the call's closing `)`, is missing before this"
        elif expression and "$END" in err.expected:
            msg = f"unexpected {shown} after a complete value"
            hint = "a value is one expression: an operator may be missing before this, or quote it as a string"
    c = Collector()
    c.add(span, msg, hint)
    return ErrorList(c.errors)


def parse_expression(text: str, file: str = "<expr>", line: int = 1, col: int = 1) -> Value:
    """Parse one expression (used for YAML strings and ``--set``), positions offset to its origin.

    Parsed from the grammar's ``expression`` start, so the text is one value and nothing else:
    ``1 save(...)`` or ``5 engine: ray`` is a syntax error, never a second statement.
    """
    check_size(len(text), file)
    check_tokens(text, file)
    moved = _mover(file, line, col)
    errors = Collector()
    try:
        tree = _parser().parse(text, start="expression")
        _check_tree(tree, file)
        value = _Build(file, errors).transform(tree)
        errors.raise_if_any()
    except (UnexpectedInput, ErrorList) as err:
        found = _syntax_error(file, text, err, expression=True) if isinstance(err, UnexpectedInput) else err
        raise ErrorList(SpecError(moved(e.span), e.message, e.hint) for e in found.errors) from None
    return _shift(value, moved)


def _mover(file: str, line: int, col: int):
    """Span in an expression's text → span in the file it came from (it starts at ``line``:``col``)."""
    def moved(s: Span) -> Span:
        if not s.line:
            return s
        c0 = s.col + col - 1 if s.line == 1 else s.col
        c1 = s.end_col + col - 1 if s.end_line <= 1 else s.end_col
        return Span(file, line + s.line - 1, c0, line + max(s.end_line, 1) - 1, c1)
    return moved


def _shift(v: Value, moved) -> Value:
    # Rebuild with shifted spans: values are frozen.
    def rebuild(node):
        updates: dict[str, Any] = {"span": node.span and moved(node.span)}
        if isinstance(node, ListV):
            updates["items"] = tuple(rebuild(i) for i in node.items)
        elif isinstance(node, DictV):
            updates["items"] = tuple((k, rebuild(i)) for k, i in node.items)
        elif isinstance(node, Call):
            updates["args"] = tuple(rebuild(a) for a in node.args)
        elif isinstance(node, Unary):
            updates["operand"] = rebuild(node.operand)
        elif isinstance(node, Binary):
            updates["left"], updates["right"] = rebuild(node.left), rebuild(node.right)
        return node.model_copy(update=updates)

    return rebuild(v)


def parse_sel(text: str, file: str = "<spec>") -> Spec:
    check_size(len(text), file)
    check_tokens(text, file)
    register_source(file, text)
    comments: list[Token] = []
    _comment_sink.tokens = comments
    try:
        tree = _parser().parse(text, start="start")
    except UnexpectedInput as err:
        raise _syntax_error(file, text, err) from None
    finally:
        _comment_sink.tokens = None
    _check_tree(tree, file)
    errors = Collector()
    statements = _Build(file, errors).transform(tree)
    errors.raise_if_any()
    return attach_docs(file, text, statements, comments)
