"""The expression language over columns: values, and clear errors on bad data."""

from __future__ import annotations

import numpy as np
import pytest

from dslrun.core.errors import Collector
from dslrun.core.expr import ExprError, evaluate, infer
from dslrun.dsl.parse import parse_expression
from dslrun.runtime.data.table import Table, as_column


@pytest.fixture
def table():
    return Table({
        "id": as_column(["a", "b", "c", "d"], "str"),
        "output": as_column(["xx", "", "hello world", "a b c"], "str"),
        "q": np.array([1.0, 2.0, 3.0, 4.0]),
        "c": np.array([2, 0, 1, 2]),
        "tags": as_column([["x"], [], ["x", "y"], None], "list"),
    })


def ev(text, table):
    return evaluate(parse_expression(text), table, table.ids)


def test_arithmetic_and_functions(table):
    np.testing.assert_allclose(ev("q * 2 + len(output)", table), [4, 4, 17, 13])
    np.testing.assert_allclose(ev("zscore(q)", table), (np.arange(1, 5) - 2.5) / np.std(np.arange(1, 5)))
    np.testing.assert_allclose(ev("rank_pct(c)", table), [0.875, 0.25, 0.5, 0.875])  # ties averaged
    np.testing.assert_allclose(ev("safe_div(q, c, -1)", table), [0.5, -1, 3, 2])
    np.testing.assert_allclose(ev("where(c > 0, q, 0)", table), [1, 0, 3, 4])
    assert ev("words(output)", table).tolist() == [1, 0, 2, 3]
    assert ev("max(c, 1) ** 2", table).tolist() == [4, 1, 1, 4]


def test_boolean_logic_and_membership(table):
    assert ev("q > 1 and not (c == 0)", table).tolist() == [False, False, True, True]
    assert ev('"x" in tags', table).tolist() == [True, False, True, False]
    assert ev('c in [0, 1]', table).tolist() == [False, True, True, False]
    assert ev('contains(output, "o")', table).tolist() == [False, False, True, False]


def test_division_by_zero_names_rows_and_fix(table):
    with pytest.raises(ExprError) as e:
        ev("q / c", table)
    msg = str(e.value)
    assert "division by zero in `q / c`: 1 row (first: sample b)" in msg
    assert "safe_div(q, c, 0)" in msg


def test_log_domain_error(table):
    with pytest.raises(ExprError, match=r"`log` of a value <= 0 .* 1 row \(first: sample b\)"):
        ev("log(c)", table)


def test_missing_column_at_run_time(table):
    with pytest.raises(ExprError, match="unknown column `qq`") as e:
        ev("qq + 1", table)
    assert "did you mean `q`?" in str(e.value)


def test_type_mismatch_is_caught_statically_and_at_run_time(table):
    errors = Collector()
    infer(parse_expression("output + 1"), {"output": "str", "q": "float"}, errors)
    assert [e.message for e in errors.errors] == ["`+` needs numbers, got str"]
    with pytest.raises(ExprError, match="type mismatch"):
        ev("output - 1", table)


@pytest.mark.parametrize("text, expected_type", [
    ("q * 2", "float"), ("c + 1", "int"), ("c / 2", "float"), ("len(output) > 3", "bool"),
    ("zscore(c)", "float"), ("where(c > 1, c, 0)", "int"),
])
def test_static_types(text, expected_type):
    errors = Collector()
    assert infer(parse_expression(text), {"q": "float", "c": "int", "output": "str"}, errors) == expected_type
    assert not errors.errors


def test_constant_expression_broadcasts(table):
    assert ev("1 + 1", table).tolist() == [2, 2, 2, 2]
