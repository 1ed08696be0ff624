"""Comments that document a spec: the header block (the spec's doc), each statement's own
comments, and the trailer, attached to the parsed statements (``parse_sel``)."""

from __future__ import annotations

from lark import Token

from dslrun.dsl.ir import ParamDef, Setting, Spec, Step


def _comment_text(tok: Token) -> str:
    body = str(tok)[1:]
    return body[1:] if body.startswith(" ") else body


def _line(tok: Token) -> int:
    # Tokens from the lexer always carry their line; only hand-made ones lack it.
    assert tok.line is not None
    return tok.line


def attach_docs(file: str, text: str, statements: list, comments: list[Token]) -> Spec:
    lines = text.splitlines()
    first_line = statements[0].span.line if statements else len(lines) + 1
    header: list[str] = []
    rest = list(comments)
    # A leading comment block that a blank line separates from what follows is the spec's doc.
    block = [c for c in rest if _line(c) < first_line]
    if block and _line(block[0]) == 1:
        n = 0
        while n < len(block) and _line(block[n]) == n + 1 and lines[n].lstrip().startswith("#"):
            n += 1
        after = _line(block[n - 1])  # 1-based line of the block's last comment
        if after >= len(lines) or not lines[after].strip():
            header = [_comment_text(c) for c in block[:n]]
            rest = rest[n:]
    docs: dict[int, list[str]] = {}
    trailer: list[str] = []
    for c in rest:
        owner = next((i for i, s in enumerate(statements) if _line(c) <= s.span.end_line), None)
        if owner is None:
            trailer.append(_comment_text(c))
        else:
            docs.setdefault(owner, []).append(_comment_text(c))
    params: list[ParamDef] = []
    settings: list[Setting] = []
    steps: list[Step] = []
    for i, s in enumerate(statements):
        doc = "\n".join(docs[i]) if i in docs else None
        s = s.model_copy(update={"doc": doc})
        if isinstance(s, ParamDef):
            params.append(s)
        elif isinstance(s, Setting):
            settings.append(s)
        else:
            steps.append(s)
    return Spec(doc="\n".join(header) if header else None, params=tuple(params), settings=tuple(settings),
                steps=tuple(steps), trailer="\n".join(trailer) if trailer else None, file=file)
