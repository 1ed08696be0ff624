"""``dslrun graph``: the compiled DAG as Mermaid or Graphviz dot text."""

from __future__ import annotations

import re

from dslrun.dsl.compile import Plan


def _id(name: str) -> str:
    return re.sub(r"\W", "_", name)


def _edges(plan: Plan) -> list[tuple[str, str]]:
    """Edges in spec order, so the text is stable for golden tests and diffs."""
    pos = {name: i for i, name in enumerate(plan.order)}
    return sorted(plan.graph.edges, key=lambda e: (pos[e[0]], pos[e[1]]))


def to_mermaid(plan: Plan) -> str:
    lines = ["flowchart TD"]
    for name in plan.order:
        node = plan.nodes[name]
        kind = node.op.resource.value if node.op else "?"
        lines.append(f'    {_id(name)}["{name}<br/>{node.step.op} · {kind}"]')
    lines += [f"    {_id(a)} --> {_id(b)}" for a, b in _edges(plan)]
    return "\n".join(lines) + "\n"


def to_dot(plan: Plan) -> str:
    shapes = {"cpu": "box", "model": "box3d", "api": "hexagon"}
    lines = ["digraph dslrun {", "    rankdir=TB;", '    node [fontname="Helvetica"];']
    for name in plan.order:
        node = plan.nodes[name]
        kind = node.op.resource.value if node.op else "cpu"
        lines.append(f'    {_id(name)} [label="{name}\\n{node.step.op} ({kind})", shape={shapes.get(kind, "box")}];')
    lines += [f"    {_id(a)} -> {_id(b)};" for a, b in _edges(plan)]
    lines.append("}")
    return "\n".join(lines) + "\n"
