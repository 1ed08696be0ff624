"""The source an operator's cached values depend on, hashed so a change cannot go unnoticed.

A cached value is keyed by the operator's hand-kept ``version`` (``core/keys.py``). What
keeps that number honest is a golden file, ``tests/fixtures/code_versions.json``: for every
cached operator it records the version and a hash of the source its values come from —
the operator's module and every ``dslrun.operators`` module it imports, directly or
transitively, plus the modules it names in ``kernels``. Comments, docstrings and
formatting do not count (the hash is over the AST). A test fails when a hash changes
while the version stays; the fix is to bump ``version`` (results change: old entries are
no longer served) or, for a change that cannot alter any value, to re-record the file
(``python tools/code_versions.py --update``) and say so in the commit.

Why a golden test rather than putting the hash itself in the key: a key that moves with
every refactor would make users pay again for thousands of API calls after a rename;
the test makes the author decide, once, in review, whether results changed.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from pathlib import Path

ROOT_PACKAGES = ("dslrun.operators",)


def module_source(name: str) -> tuple[Path, str] | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    path = Path(spec.origin)
    return path, path.read_text(encoding="utf-8")


def _imports(tree: ast.AST, package: str) -> set[str]:
    """Every dslrun module a module imports, at any depth in its body (lazy imports too)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if not base.startswith("dslrun."):
                continue
            for alias in node.names:
                cand = f"{base}.{alias.name}"
                out.add(cand if _is_module(cand) else base)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("dslrun.")}


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError, AttributeError):
        return False


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and _is_docstring(body[0]):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]  # any node with a body
    return tree


def source_modules(module: str, kernels: tuple[str, ...] = ()) -> list[str]:
    """The operator's module, the ``dslrun.operators`` modules it reaches, and its kernels."""
    seen: set[str] = set()
    todo = [module, *kernels]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        found = module_source(name)
        if found is None:
            continue
        seen.add(name)
        package = name if found[0].name == "__init__.py" else name.rpartition(".")[0]
        for dep in _imports(ast.parse(found[1]), package):
            if dep.startswith(ROOT_PACKAGES) and dep not in seen:
                todo.append(dep)
    return sorted(seen)


def source_hash(module: str, kernels: tuple[str, ...] = ()) -> str:
    h = hashlib.sha256()
    for name in source_modules(module, kernels):
        found = module_source(name)
        assert found is not None
        h.update(name.encode() + b"\0" + ast.dump(_strip_docstrings(ast.parse(found[1]))).encode() + b"\0")
    return h.hexdigest()[:16]
