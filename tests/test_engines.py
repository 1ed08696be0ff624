"""Choosing an engine: flags, dslrun.yaml, clear errors; the local engine never imports Ray."""

from __future__ import annotations

import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

from dslrun.core.errors import ErrorList
from dslrun.core.settings import RunSettings
from dslrun.runtime.config import run_settings
from dslrun.runtime.execution.engines import EngineError, make_engine
from testkit.cli import SPECS, dslrun


def flags(**kw):
    return SimpleNamespace(**kw)


def picked(settings) -> tuple:
    return settings.engine, settings.address, settings.replicas, settings.gpus_per_replica


def test_default_is_local_and_flags_win_over_the_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DSLRUN_CONFIG", raising=False)
    assert picked(run_settings(flags())) == ("local", None, None, None)
    (tmp_path / "dslrun.yaml").write_text("engine: ray\naddress: head:6379\nreplicas: 4\ngpus_per_replica: 1\n")
    assert picked(run_settings(flags())) == ("ray", "head:6379", 4, 1)
    assert picked(run_settings(flags(engine="local", replicas=2))) == ("local", "head:6379", 2, 1)


@pytest.mark.parametrize("text,message", [
    ("engine: spark\n", "dslrun.yaml: setting `engine`: Input should be 'local' or 'ray'"),
    ("engine: ray\nreplica: 3\n", "dslrun.yaml: unknown setting `replica`; did you mean `replicas`?"),
    ("- ray\n", "expected a mapping"),
])
def test_config_file_errors_name_the_problem(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DSLRUN_CONFIG", raising=False)
    (tmp_path / "dslrun.yaml").write_text(text)
    with pytest.raises(ErrorList, match=re.escape(message)):
        run_settings(flags())


def test_unknown_engine_and_missing_ray_are_clear_errors(monkeypatch):
    with pytest.raises(EngineError, match="unknown engine 'spark'"):
        make_engine(RunSettings.model_construct(engine="spark"))
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(EngineError, match=r"pip install 'dslrun\[ray\]'"):
        make_engine(RunSettings(engine="ray"))


def test_a_local_run_never_imports_ray(tmp_path):
    code = ("import sys; from dslrun.runtime.cli import main; rc = main(sys.argv[1:]); "
            "print('RAY', 'ray' in sys.modules); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, "run", str(SPECS / "longest.sel"), "-q", "--set", "limit=20"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "RAY False" in r.stdout


def test_run_reports_an_engine_that_cannot_start(tmp_path):
    (tmp_path / "dslrun.yaml").write_text("engine: spark\n")
    proc = dslrun("run", str(SPECS / "longest.sel"), "-q", cwd=tmp_path)
    assert proc.returncode == 2 and "dslrun.yaml: setting `engine`: Input should be 'local' or 'ray'" in proc.stderr


def test_blocks_for_ray_data_round_trip_every_kind_of_column():
    import numpy as np

    from dslrun.core.params import Params as NoParams
    from dslrun.operators.base import SampleOperator
    from dslrun.runtime.data.table import Table, as_column
    from dslrun.runtime.execution.engines.ray_workers import from_arrow, shipped, to_arrow

    table = Table({
        "id": as_column(["a", "b"], "str"),
        "output": as_column(["x y", ""], "str"),
        "messages": as_column([[{"role": "user", "content": "hi"}], []], "list"),
        "score": np.array([1.5, np.nan]),
        "n": np.array([3, 4], dtype=np.int64),
        "_record": as_column([{"output": "x y"}, {"output": ""}], "any"),
    })
    back = from_arrow(to_arrow(table))
    assert back.all_columns == ["id", "output", "messages", "score", "n", "_record"]
    assert list(back.column("messages")) == list(table.column("messages"))
    assert np.array_equal(back.column("score"), table.column("score"), equal_nan=True)
    assert back.column("n").dtype == np.int64 and list(back.column("output")) == ["x y", ""]
    # Workers get what the operator reads: one that names its columns gets those; others all but _record.
    class ReadsOutput(SampleOperator[NoParams]):
        name = "reads-output"
        columns_read = ("output",)

    assert shipped(ReadsOutput(NoParams()), table).all_columns == ["id", "output"]
    class ReadsAnything(SampleOperator[NoParams]):
        name = "reads-anything"

    assert shipped(ReadsAnything(NoParams()), table).all_columns == ["id", "output", "messages", "score", "n"]


def test_text_held_in_arrow_goes_to_ray_data_without_python_strings(tmp_path, monkeypatch):
    import json

    from dslrun.runtime.data.arrow_columns import ArrowColumn
    from dslrun.runtime.data.pool_files import read_pool
    from dslrun.runtime.execution.engines.ray_workers import from_arrow, shipped, to_arrow

    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"q{i}", "output": f"answer {i}"}) + "\n" for i in range(5)))
    table = read_pool(path).table
    expected = table.column("output").tolist()

    def no_python(*a, **k):
        raise AssertionError("text was turned into Python strings")

    monkeypatch.setattr(ArrowColumn, "read", no_python)
    block = to_arrow(shipped(_Reads(), table).select(["id", "output"]))
    monkeypatch.undo()
    assert block.column("output").to_pylist() == expected
    assert from_arrow(block).column("output").tolist() == expected


def _Reads():
    from dslrun.core.params import Params as NoParams
    from dslrun.operators.base import SampleOperator

    class ReadsOutput(SampleOperator[NoParams]):
        name = "reads-output-arrow"
        columns_read = ("output",)

    return ReadsOutput(NoParams())
