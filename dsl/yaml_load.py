"""YAML spec → IR, with spans from the YAML nodes and comments kept as docs.

The YAML form mirrors .sel: ``params`` (a mapping of defaults), run settings as
top-level keys (``engine: ray``; names in dsl/settings.py, values checked by compile)
and ``steps`` (a list; each item has ``op``, optional ``name`` and ``input``, and the
operator's parameters). Strings in expression fields are parsed with the .sel expression
grammar; ``$name`` is a spec parameter (``$$`` escapes a literal dollar).
Duplicate keys are errors, with both positions.
"""

from __future__ import annotations

import re

import yaml

from dslrun.core.errors import Collector, ErrorList, Span, did_you_mean, register_source
from dslrun.core.params import FieldKind
from dslrun.core.values import DictV, ListV, Lit, Param, Ref, Value
from dslrun.dsl.fields import kind_of
from dslrun.dsl.ir import ParamDef, Setting, Spec, Step
from dslrun.dsl.limits import check_size
from dslrun.dsl.parse import parse_expression
from dslrun.dsl.settings import SETTINGS
from dslrun.dsl.yaml_safe import compose

TOP_KEYS = ("params", "steps", *SETTINGS)
STEP_KEYS = ("name", "op", "input")


def _span(file: str, node: yaml.Node) -> Span:
    s, e = node.start_mark, node.end_mark
    return Span(file, s.line + 1, s.column + 1, e.line + 1, e.column + 1)


class _Loader:
    def __init__(self, file: str, text: str):
        self.file, self.lines = file, text.splitlines()
        self.errors = Collector()

    def mapping(self, node: yaml.Node, what: str) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            self.errors.add(_span(self.file, node), f"{what} must be a mapping (key: value)")
            return []
        seen: dict[str, yaml.Node] = {}
        out = []
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            if key is None:
                self.errors.add(_span(self.file, k), "keys must be plain names")
                continue
            if key in seen:
                first = _span(self.file, seen[key])
                self.errors.add(_span(self.file, k), f"duplicate key `{key}` (first at line {first.line})",
                                "YAML keeps only the last one; remove or rename one of them")
            seen[key] = k
            out.append((k, v))
        return out

    def doc_above(self, line: int, floor: int = 0) -> str | None:
        """Comment lines directly above 1-based ``line`` (blank lines allowed between blocks).

        Lines before index ``floor`` are not looked at: a top-level key's doc stops at the header.
        """
        docs: list[str] = []
        i = line - 2
        while i >= floor:
            text = self.lines[i].strip()
            if text.startswith("#"):
                body = text[1:]
                docs.append(body[1:] if body.startswith(" ") else body)
            elif text:
                break
            i -= 1
        return "\n".join(reversed(docs)) if docs else None

    def header(self, first_content_line: int) -> str | None:
        docs = []
        for i, raw in enumerate(self.lines):
            text = raw.strip()
            if i + 1 >= first_content_line:
                break
            if text.startswith("#"):
                body = text[1:]
                docs.append(body[1:] if body.startswith(" ") else body)
            elif not text:
                return "\n".join(docs) if docs else None
            else:
                break
        return None

    def value(self, node: yaml.Node, kind: FieldKind) -> Value:
        span = _span(self.file, node)
        if isinstance(node, yaml.SequenceNode):
            return ListV(items=tuple(self.value(i, kind) for i in node.value), span=span)
        if isinstance(node, yaml.MappingNode):
            items = tuple((k.value, self.value(v, kind)) for k, v in self.mapping(node, "a value"))
            return DictV(items=items, span=span)
        assert isinstance(node, yaml.ScalarNode)
        resolved = self.scalar(node)
        if not isinstance(resolved, str):
            return Lit(value=resolved, span=span)
        # `$name` alone is a parameter; in an expression field `$a * score` is an expression using one.
        is_param = resolved.startswith("$") and not resolved.startswith("$$")
        if is_param and (kind != FieldKind.EXPR or re.fullmatch(r"\$[A-Za-z_][A-Za-z0-9_]*", resolved)):
            return Param(name=resolved[1:], span=span)
        if resolved.startswith("$$"):
            resolved = resolved[1:]
        if kind == FieldKind.EXPR:
            col = span.col + (1 if node.style in ("'", '"') else 0)
            try:
                return parse_expression(resolved, self.file, span.line, col)
            except ErrorList as e:
                self.errors.extend(e.errors)
                return Lit(value=resolved, span=span)
        if kind == FieldKind.STEP:
            return Ref(name=resolved, span=span)
        return Lit(value=resolved, span=span)

    @staticmethod
    def scalar(node: yaml.ScalarNode):
        if node.tag == "tag:yaml.org,2002:str":
            return node.value
        loader = yaml.SafeLoader("")
        try:
            return loader.construct_object(node, deep=True)
        finally:
            loader.dispose()

    def step(self, node: yaml.Node) -> Step | None:
        span = _span(self.file, node)
        pairs = self.mapping(node, "a step")
        keys = {k.value: (k, v) for k, v in pairs}
        if "op" not in keys:
            self.errors.add(span, "step has no `op`", "add `op: <operator name>`, e.g. `op: load`")
            return None
        op_key, op_node = keys["op"]
        op = self.scalar(op_node) if isinstance(op_node, yaml.ScalarNode) else None
        if not isinstance(op, str):
            self.errors.add(_span(self.file, op_node), "`op` must be an operator name")
            return None
        name = None
        if "name" in keys:
            name = str(self.scalar(keys["name"][1]))
        inputs: tuple[Ref, ...] = ()
        if "input" in keys:
            inode = keys["input"][1]
            items = inode.value if isinstance(inode, yaml.SequenceNode) else [inode]
            inputs = tuple(Ref(name=str(self.scalar(i)), span=_span(self.file, i)) for i in items)
        args, arg_spans = [], {}
        for k, v in pairs:
            if k.value in STEP_KEYS:
                continue
            arg_spans[k.value] = _span(self.file, k)
            args.append((k.value, self.value(v, kind_of(op, k.value))))
        return Step(name=name, op=op, inputs=inputs, args=tuple(args), span=span,
                    op_span=_span(self.file, op_node), arg_spans=arg_spans,
                    doc=self.doc_above(span.line))

    def setting(self, key: yaml.ScalarNode, node: yaml.Node, header: str | None) -> Setting:
        kspan, vspan = _span(self.file, key), _span(self.file, node)
        floor = len(header.split("\n")) if header is not None else 0  # the header is the file's first lines
        return Setting(name=key.value, value=self.value(node, FieldKind.VALUE),
                       doc=self.doc_above(kspan.line, floor), name_span=kspan,
                       span=Span(self.file, kspan.line, kspan.col, vspan.end_line, vspan.end_col))

    def spec(self, root: yaml.Node | None) -> Spec:
        if root is None:
            return Spec(file=self.file)
        top = self.mapping(root, "a spec")
        params, settings, steps = [], [], []
        first_line = _span(self.file, top[0][0]).line if top else len(self.lines) + 1
        header = self.header(first_line)
        for k, v in top:
            if k.value == "params":
                for pk, pv in self.mapping(v, "`params`"):
                    pspan = _span(self.file, pk)
                    params.append(ParamDef(name=pk.value, default=self.value(pv, FieldKind.VALUE),
                                           span=pspan, doc=self.doc_above(pspan.line)))
            elif k.value == "steps":
                if not isinstance(v, yaml.SequenceNode):
                    self.errors.add(_span(self.file, v), "`steps` must be a list of steps",
                                    "write each step as `- op: …`")
                    continue
                steps.extend(s for s in map(self.step, v.value) if s is not None)
            elif k.value in SETTINGS:
                settings.append(self.setting(k, v, header))
            else:
                self.errors.add(_span(self.file, k), f"unknown top-level key `{k.value}`",
                                did_you_mean(k.value, TOP_KEYS))
        trailer = self.trailer()
        return Spec(doc=header, params=tuple(params), settings=tuple(settings),
                    steps=tuple(steps), trailer=trailer, file=self.file)

    def trailer(self) -> str | None:
        docs = []
        for raw in reversed(self.lines):
            text = raw.strip()
            if text.startswith("#"):
                body = text[1:]
                docs.append(body[1:] if body.startswith(" ") else body)
            elif text:
                break
        return "\n".join(reversed(docs)) if docs else None


def parse_yaml(text: str, file: str = "<spec>") -> Spec:
    check_size(len(text), file)
    register_source(file, text)
    loader = _Loader(file, text)
    root = compose(text, file)
    spec = loader.spec(root)
    loader.errors.raise_if_any()
    return spec
