"""Front door: read a spec file in either spelling and return its canonical IR."""

from __future__ import annotations

from pathlib import Path

from dslrun.core.errors import Collector, Span
from dslrun.dsl.fields import normalize_sel
from dslrun.dsl.ir import Spec
from dslrun.dsl.limits import check_size
from dslrun.dsl.parse import parse_sel
from dslrun.dsl.yaml_load import parse_yaml

SEL_SUFFIXES = (".sel",)
YAML_SUFFIXES = (".yaml", ".yml")


def parse_text(text: str, file: str, syntax: str) -> Spec:
    if syntax == "sel":
        return normalize_sel(parse_sel(text, file))
    return parse_yaml(text, file)


def syntax_of(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in SEL_SUFFIXES:
        return "sel"
    if suffix in YAML_SUFFIXES:
        return "yaml"
    c = Collector()
    c.add(Span(str(path)), f"unknown spec file type `{suffix or '(none)'}`",
          "name the spec `*.sel` or `*.yaml`")
    c.raise_if_any()
    raise AssertionError


def load_spec(path: str | Path) -> Spec:
    return load_spec_text(path)[0]


def load_spec_text(path: str | Path) -> tuple[Spec, str]:
    """The spec and its text (the lock file hashes the text)."""
    path = Path(path)
    syntax = syntax_of(path)
    try:
        check_size(path.stat().st_size, str(path))  # before reading: the file may be any size
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        c = Collector()
        c.add(Span(str(path)), "spec file not found")
        c.raise_if_any()
        raise
    except UnicodeDecodeError as e:
        c = Collector()
        c.add(Span(str(path)), f"spec is not valid UTF-8 ({e.reason} at byte {e.start})")
        c.raise_if_any()
        raise
    except OSError as e:
        c = Collector()
        c.add(Span(str(path)), f"cannot read the spec: {e.strerror or e}")
        c.raise_if_any()
        raise
    return parse_text(text, str(path), syntax), text
