"""YAML text → a bounded node tree: plain values only, limits checked while composing.

PyYAML's ``SafeLoader`` still composes recursively (a list 2,000 deep is a RecursionError),
expands aliases without bound when the tree is walked (nine levels of nine aliases are 387M
values: "billion laughs"), and resolves tags a spec has no use for (``!!timestamp``,
``!!python/name:``, custom ``!tags``). This composer counts depth, values and alias copies
as it goes and accepts only the JSON-like tags, so a hostile spec stops at the first bound
with a span, before anything is expanded.
"""

from __future__ import annotations

import yaml
from yaml.events import AliasEvent

from dslrun.core.errors import ErrorList, Span, SpecError
from dslrun.dsl.limits import (
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    MAX_NODES,
    number_problem,
    string_problem,
    too_deep,
    too_many,
)

_CORE = "tag:yaml.org,2002:"
ALLOWED_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null", "seq", "map")}
# Unquoted dates read as strings (the .sel spelling has no dates); `=` is a string, not a "value" tag.
_NOT_IMPLICIT = {_CORE + "timestamp", _CORE + "value"}


def _span(file: str, start: yaml.Mark, end: yaml.Mark | None = None) -> Span:
    end = end or start
    return Span(file, start.line + 1, start.column + 1, end.line + 1, end.column + 1)


def shown_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag


class BoundedLoader(yaml.SafeLoader):
    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in _NOT_IMPLICIT]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, text: str, file: str):
        super().__init__(text)
        self.file = file
        self.depth = self.values = self.copied = 0
        self.open: set[str] = set()  # anchors whose node is still being composed
        self.measured: dict[int, tuple[int, int]] = {}  # id(node) → (values, height)

    def fail(self, error: SpecError) -> ErrorList:
        return ErrorList([error])

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            node = self.anchors.get(event.anchor)
            span = _span(self.file, event.start_mark, event.end_mark)
            if event.anchor in self.open:
                raise self.fail(SpecError(span, f"alias `*{event.anchor}` refers to a value that contains it",
                                          "a spec cannot hold a value that contains itself"))
            if node is not None:
                values, height = self.measure(node)
                self.copied += values
                if self.copied > MAX_ALIAS_NODES:
                    raise self.fail(SpecError(span, f"YAML aliases copy more than {MAX_ALIAS_NODES:,} values",
                                              "write the values out, or use fewer aliases"))
                if self.depth + height > MAX_DEPTH:
                    raise self.fail(too_deep(span))
            return super().compose_node(parent, index)
        span = _span(self.file, event.start_mark)
        self.depth += 1
        self.values += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(too_deep(span))
        if self.values > MAX_NODES:
            raise self.fail(too_many(span))
        anchor = getattr(event, "anchor", None)
        if anchor:
            self.open.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
            self.open.discard(anchor)
        self.check(node)
        return node

    def measure(self, node: yaml.Node) -> tuple[int, int]:
        """Values in ``node`` (aliases counted each time) and its height; recursion is bounded by MAX_DEPTH."""
        key = id(node)
        if key not in self.measured:
            children: list[yaml.Node] = []
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            sizes = [self.measure(c) for c in children]
            self.measured[key] = (1 + sum(s for s, _ in sizes), 1 + max((h for _, h in sizes), default=0))
        return self.measured[key]

    def check(self, node: yaml.Node) -> None:
        span = _span(self.file, node.start_mark, node.end_mark)
        if node.tag == _CORE + "merge":
            raise self.fail(SpecError(span, "YAML merge keys (`<<`) are not supported in a spec",
                                      "write the keys out"))
        if node.tag not in ALLOWED_TAGS:
            raise self.fail(SpecError(span, f"YAML tag `{shown_tag(node.tag)}` is not allowed in a spec",
                                      "a spec holds strings, numbers, booleans, null, lists and mappings; "
                                      "quote the value to make it a string"))
        if not isinstance(node, yaml.ScalarNode):
            return
        problem = string_problem(node.value)
        if problem is None and node.tag in (_CORE + "int", _CORE + "float"):
            problem = number_problem(node.value)
            if problem is None:
                problem = number_problem(node.value, self.construct_object(node))
        if problem:
            raise self.fail(SpecError(span, problem))


def compose(text: str, file: str) -> yaml.Node | None:
    """The document's root node, or ``ErrorList`` with a span for bad YAML or a bound crossed."""
    loader = None
    try:
        loader = BoundedLoader(text, file)  # the reader checks every character here
        return loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        span = _span(file, mark) if mark else Span(file)
        raise ErrorList([SpecError(span, f"invalid YAML: {e.problem or e.context}")]) from None
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        col = e.position - text.rfind("\n", 0, e.position)
        what = "a NUL byte" if e.character == 0 else f"character U+{e.character:04X}"
        raise ErrorList([SpecError(Span(file, line, col), f"invalid YAML: {what} is not allowed",
                                   "remove it; YAML allows only printable characters")]) from None
    except yaml.YAMLError as e:
        raise ErrorList([SpecError(Span(file), f"invalid YAML: {e}")]) from None
    finally:
        if loader is not None:
            loader.dispose()
