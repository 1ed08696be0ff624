"""Hostile specs (tests/fixtures/hostile/): each one a spec error with a span, never a traceback.

Before the bounds in dsl/limits.py each of these crashed `dslrun check` (RecursionError,
lark VisitError, ReaderError, ConstructorError, a pydantic ValidationError) or, for the
alias bomb, ran past 60 s above 1 GiB.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from dslrun.core.errors import ErrorList
from dslrun.dsl.compile import compile_spec
from dslrun.dsl.limits import MAX_DEPTH, MAX_NODES, MAX_SPEC_BYTES, MAX_TOKENS
from dslrun.dsl.load import load_spec, parse_text
from dslrun.runtime import cli

HOSTILE = Path(__file__).parent / "fixtures" / "hostile"

# fixture → (words the message must contain, line of the error)
CASES = {
    "list_nested_500.sel": ("nested more than", 1),
    "not_3000.sel": ("nested more than", 1),
    "sum_chain_3000.sel": ("nested more than", 1),
    "int_5000_digits.sel": ("number literal too long", 1),
    "float_overflow.sel": ("number out of range", 1),
    "list_nested_2000.yaml": ("nested more than", 2),
    "int_5000_digits.yaml": ("number literal too long", 2),
    "nul_byte.yaml": ("a NUL byte is not allowed", 3),
    "tag_python_name.yaml": ("`!!python/name:os.system` is not allowed", 2),
    "tag_timestamp.yaml": ("`!!timestamp` is not allowed", 2),
    "tag_custom.yaml": ("`!secret` is not allowed", 2),
    "alias_cycle.yaml": ("refers to a value that contains it", 2),
    "merge_key.yaml": ("merge keys", 4),
    "billion_laughs.yaml": ("aliases copy more than", 5),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_spec_is_one_spec_error_with_a_span(name):
    words, line = CASES[name]
    path = HOSTILE / name
    with pytest.raises(ErrorList) as info:
        compile_spec(load_spec(path))
    (err,) = info.value.errors
    assert words in err.message
    assert (err.span.file, err.span.line) == (str(path), line)
    assert err.span.col >= 1
    rendered = err.render()
    assert "^" in rendered and max(map(len, rendered.splitlines())) < 300  # a window, not a 12 KB line


@pytest.mark.parametrize("name", sorted(CASES))
def test_cli_check_prints_no_traceback(name, capsys):
    assert cli.main(["check", str(HOSTILE / name)]) == cli.EXIT_SPEC
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{name}:" in err


def test_billion_laughs_stops_before_expanding():
    """Nine levels of nine aliases are 387M values when walked; the composer counts copies instead."""
    text = (HOSTILE / "billion_laughs.yaml").read_text()
    parse_text("steps: []\n", "warm.yaml", "yaml")  # import-time allocations out of the measurement
    tracemalloc.start()
    try:
        with pytest.raises(ErrorList):
            parse_text(text, "bomb.yaml", "yaml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000, peak


def test_aliases_within_the_bound_still_work():
    text = "params:\n  price: &p {input: 1.0, output: 2.0}\n  other: *p\nsteps:\n  - op: load\n    path: x\n"
    spec = parse_text(text, "ok.yaml", "yaml")
    assert [p.name for p in spec.params] == ["price", "other"]


def test_unquoted_date_is_a_string_not_a_timestamp():
    spec = parse_text("params:\n  when: 2001-12-14\nsteps: []\n", "d.yaml", "yaml")
    assert spec.params[0].default.value == "2001-12-14"


@pytest.mark.parametrize("text,words", [
    ("param x = 9223372036854775808\n", "integer out of range"),
    ("param x = -9223372036854775807\n", None),
    ("param x = 1.5e308\n", None),
    ("param x = \"" + "a" * 200_001 + "\"\n", "string literal too long"),
])
def test_number_and_string_bounds(text, words):
    if words is None:
        parse_text(text, "n.sel", "sel")
        return
    with pytest.raises(ErrorList, match=words):
        parse_text(text, "n.sel", "sel")


def test_depth_bound_is_exact():
    ok = "param x = " + "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2) + "\n"
    parse_text(ok, "d.sel", "sel")
    deep = "param x = " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n"
    with pytest.raises(ErrorList, match="nested more than"):
        parse_text(deep, "d.sel", "sel")


def test_node_count_bound():
    text = "params:\n  x: [" + ", ".join(["1"] * (MAX_NODES + 1)) + "]\nsteps: []\n"
    with pytest.raises(ErrorList, match=f"more than {MAX_NODES:,} values"):
        parse_text(text, "n.yaml", "yaml")


def test_token_count_bound_is_checked_before_lark_parses():
    text = "# a comment, not counted\nparam x = [" + ", ".join(["1"] * (MAX_TOKENS // 2)) + "]\n"
    with pytest.raises(ErrorList) as info:
        parse_text(text, "t.sel", "sel")
    (err,) = info.value.errors
    assert f"more than {MAX_TOKENS:,} tokens" in err.message and err.span.line == 2
    parse_text("param x = [" + ", ".join(["1"] * (MAX_TOKENS // 2 - 4)) + "]\n", "t.sel", "sel")


def test_spec_too_large_is_refused_before_reading(tmp_path):
    big = tmp_path / "big.sel"
    with big.open("w") as f:
        f.write("# x\n" * (MAX_SPEC_BYTES // 4 + 1))
    with pytest.raises(ErrorList, match="spec is too large"):
        load_spec(big)


def test_expression_in_yaml_is_bounded_with_its_position():
    text = "steps:\n  - op: load\n    path: x\n  - op: filter\n    input: load_1\n    where: " + \
        "not " * 100 + "true\n"
    with pytest.raises(ErrorList) as info:
        parse_text(text, "e.yaml", "yaml")
    (err,) = info.value.errors
    assert "nested more than" in err.message and err.span.line == 6


def test_unexpected_exception_is_an_internal_error_not_a_traceback(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.delenv("DSLRUN_DEBUG", raising=False)
    monkeypatch.setitem(cli.HANDLERS, "check", broken)
    assert cli.main(["check", str(HOSTILE / "tag_custom.yaml")]) == cli.EXIT_INTERNAL == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("internal error: RuntimeError: boom second line (at test_hostile_specs.py:")
    assert "please report it" in err
