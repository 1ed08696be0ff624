"""Front-ends: .sel and YAML produce the same IR; fmt round-trips every recipe."""

from __future__ import annotations

import pytest

from dslrun.core.errors import ErrorList
from dslrun.core.render import expr_text
from dslrun.core.values import Binary, Lit, Param, Ref
from dslrun.dsl.emit import to_sel, to_yaml
from dslrun.dsl.load import load_spec, parse_text
from dslrun.dsl.parse import parse_expression
from testkit.cli import SPECS

SEL = """\
# header doc

# the pool
param pool = "data/x.json"
param k = 1_000
param w = {a: 1, "b c": -2.5}

pool = load(path: $pool, limit: 0)
top = rank(pool, by: len(output) * 2 - 3, top: $k, where: n_turns >= 1 and not (input in ["a", 'b']))
save(top, format: json)  # trailing
"""

YAML = """\
# header doc

params:
  # the pool
  pool: data/x.json
  k: 1000
  w: {a: 1, b c: -2.5}
steps:
  - name: pool
    op: load
    path: $pool
    limit: 0
  - name: top
    op: rank
    input: pool
    by: len(output) * 2 - 3
    top: $k
    where: 'n_turns >= 1 and not (input in ["a", ''b''])'
  # trailing
  - op: save
    input: top
    format: json
"""


def test_sel_and_yaml_give_the_same_ir():
    a = parse_text(SEL, "a.sel", "sel")
    b = parse_text(YAML, "b.yaml", "yaml")
    assert a.model_dump() == b.model_dump()
    assert a.doc == "header doc"
    assert a.params[0].doc == "the pool"
    assert a.steps[2].doc == "trailing"


def test_bare_word_in_a_value_field_is_a_string():
    spec = parse_text(SEL, "a.sel", "sel")
    assert dict(spec.steps[2].args)["format"] == Lit(value="json")


def test_spans_point_at_the_source():
    spec = parse_text(SEL, "a.sel", "sel")
    by = dict(spec.steps[1].args)["by"]
    assert (by.span.line, by.span.col) == (9, 22)
    yspec = parse_text(YAML, "b.yaml", "yaml")
    assert yspec.steps[1].arg_spans["by"].line == 16


@pytest.mark.parametrize("text, rendered", [
    ("a - (b - c)", "a - (b - c)"),
    ("(a - b) - c", "a - b - c"),
    ("-(a + b) * c", "-(a + b) * c"),
    ("not (a and b) or c", "not (a and b) or c"),
    ("2 ** -x", "2 ** -x"),
    ("(a < b) == c", "(a < b) == c"),
    ("x in [1, 2.5, \"s\", null, true]", "x in [1, 2.5, \"s\", null, true]"),
    ("zscore(q) + rank_pct(ifd)", "zscore(q) + rank_pct(ifd)"),
])
def test_expression_rendering_is_minimal_and_reparses(text, rendered):
    v = parse_expression(text)
    assert expr_text(v) == rendered
    assert parse_expression(rendered).model_dump() == v.model_dump()


def test_negative_literal_is_folded():
    assert parse_expression("-5") == Lit(value=-5)
    v = parse_expression("a - -5")
    assert isinstance(v, Binary) and v.right == Lit(value=-5) and v.left == Ref(name="a")


@pytest.mark.parametrize("spec", sorted(SPECS.glob("*.sel")) + sorted(SPECS.glob("*.yaml")), ids=lambda p: p.name)
def test_fmt_round_trips_every_recipe(spec):
    ir = load_spec(spec)
    as_yaml = to_yaml(ir)
    as_sel = to_sel(ir)
    from_yaml = parse_text(as_yaml, "x.yaml", "yaml")
    from_sel = parse_text(as_sel, "x.sel", "sel")
    assert from_yaml.model_dump() == ir.model_dump()
    assert from_sel.model_dump() == ir.model_dump()
    assert to_sel(from_yaml) == as_sel  # canonical text is a fixed point
    assert to_yaml(from_sel) == as_yaml


@pytest.mark.parametrize("sel", sorted(SPECS.glob("*.sel")), ids=lambda p: p.name)
def test_every_recipe_has_a_yaml_twin_with_the_same_ir(sel):
    twin = sel.with_suffix(".yaml")
    assert twin.exists(), f"{sel.name} has no YAML twin"
    assert load_spec(twin).model_dump() == load_spec(sel).model_dump()


def test_syntax_error_has_position_and_hint():
    with pytest.raises(ErrorList) as e:
        parse_text('pool = load(path: "a.json"\nx = rank(pool, by: 1)\n', "s.sel", "sel")
    text = str(e.value)
    assert "s.sel:2:1: error: unexpected `x`" in text
    assert "closing `)`" in text


@pytest.mark.parametrize("text", ["1e999len(output)", "1 len(output)", "5 engine: ray", "1 save(x, format: json)",
                                  "a\nparam b = 2"])
def test_an_expression_is_one_value_and_nothing_after_it(text):
    # Parsed as `param _ = TEXT`, these were a second statement and crashed with a ValueError.
    with pytest.raises(ErrorList) as e:
        parse_expression(text, "v.yaml", 7, 12)
    (err,) = e.value.errors
    assert err.message.endswith("after a complete value"), err.message
    assert err.span.file == "v.yaml" and err.span.line in (7, 8)


def test_an_error_inside_a_yaml_expression_points_into_the_yaml_file():
    text = ("steps:\n  - {name: p, op: load, path: x.json}\n"
            "  - {name: d, op: derive, input: p, column: y, expr: n_turns + 1e999}\n")
    with pytest.raises(ErrorList) as e:
        parse_text(text, "e.yaml", "yaml")
    (err,) = e.value.errors
    assert (str(err.span), err.message) == ("e.yaml:3:64", "number out of range (inf)")
    with pytest.raises(ErrorList) as e:
        parse_text(text.replace("n_turns + 1e999", "n_turns +"), "e.yaml", "yaml")
    assert str(e.value.errors[0].span) == "e.yaml:3:63"


def test_yaml_duplicate_key_is_an_error():
    with pytest.raises(ErrorList) as e:
        parse_text("steps:\n  - op: load\n    path: a\n    path: b\n", "d.yaml", "yaml")
    assert "d.yaml:4:5: error: duplicate key `path` (first at line 3)" in str(e.value)


def test_dollar_escape_in_yaml_and_sel():
    sel = 'save(x, path: "$HOME")\n'
    spec = parse_text(sel, "a.sel", "sel")
    yaml_text = to_yaml(spec)
    assert "$$HOME" in yaml_text
    assert parse_text(yaml_text, "a.yaml", "yaml").model_dump() == spec.model_dump()


def test_yaml_expression_may_start_with_a_parameter():
    spec = parse_text("params:\n  a: 2\nsteps:\n  - {name: p, op: load, path: x.json}\n"
                      "  - {name: d, op: derive, input: p, column: y, expr: $a * n_turns}\n", "e.yaml", "yaml")
    expr = spec.steps[1].arg("expr")
    assert isinstance(expr, Binary) and expr.left == Param(name="a") and expr.right == Ref(name="n_turns")
    assert "expr: $a * n_turns" in to_sel(spec)
