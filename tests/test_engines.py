"""Choosing an engine: flags, dslrun.yaml, clear errors; the local engine never imports Ray."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from dslrun.dsl.errors import ErrorList
from dslrun.runtime.config import engine_settings
from dslrun.runtime.engines import EngineError, make_engine
from testkit.cli import SPECS, dslrun


def flags(**kw):
    base = dict(engine=None, address=None, replicas=None, gpus_per_replica=None, cpus_per_replica=None)
    return SimpleNamespace(**{**base, **kw})


def test_default_is_local_and_flags_win_over_the_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DSLRUN_CONFIG", raising=False)
    assert engine_settings(flags(), tmp_path / "s.sel") == ("local", None, {})
    (tmp_path / "dslrun.yaml").write_text("engine: ray\naddress: head:6379\nreplicas: 4\ngpus_per_replica: 1\n")
    assert engine_settings(flags(), tmp_path / "s.sel") == (
        "ray", "head:6379", {"ray_replicas": 4, "ray_gpus_per_replica": 1})
    assert engine_settings(flags(engine="local", replicas=2), tmp_path / "s.sel") == (
        "local", "head:6379", {"ray_replicas": 2, "ray_gpus_per_replica": 1})


@pytest.mark.parametrize("text,message", [
    ("engine: spark\n", "engine must be local or ray"),
    ("engine: ray\nreplica: 3\n", "unknown setting(s) replica"),
    ("- ray\n", "expected a mapping"),
])
def test_config_file_errors_name_the_problem(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DSLRUN_CONFIG", raising=False)
    (tmp_path / "dslrun.yaml").write_text(text)
    with pytest.raises(ErrorList, match=message.replace("(", r"\(").replace(")", r"\)")):
        engine_settings(flags(), tmp_path / "s.sel")


def test_unknown_engine_and_missing_ray_are_clear_errors(monkeypatch):
    with pytest.raises(EngineError, match="unknown engine 'spark'"):
        make_engine("spark")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(EngineError, match=r"pip install 'dslrun\[ray\]'"):
        make_engine("ray")


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
    assert proc.returncode == 2 and "engine must be local or ray" in proc.stderr
