"""Run settings in a spec (`engine: ray`): both front-ends, errors, fmt, and precedence
(command-line flags > the spec > dslrun.yaml > defaults)."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from dslrun.core.errors import ErrorList
from dslrun.core.values import Lit, Param
from dslrun.dsl.compile import compile_spec
from dslrun.dsl.emit import to_sel, to_yaml
from dslrun.dsl.load import load_spec, parse_text
from dslrun.dsl.settings import SETTINGS
from dslrun.runtime.cli import main, parse_overrides
from dslrun.runtime.config import KEYS, run_settings
from testkit.cli import POOL, alpaca, write_pool

SEL = f"""\
# header doc

param eng = "local"
param pool = "{POOL}"

# where it runs
engine: $eng
address: "head:6379"
replicas: 4
gpus_per_replica: 0.5
cpus_per_replica: 2

pool = load(path: $pool, limit: 20)
save(pool)
"""

YAML = f"""\
# header doc

params:
  eng: local
  pool: {POOL}
# where it runs
engine: $eng
address: head:6379
replicas: 4
gpus_per_replica: 0.5
cpus_per_replica: 2
steps:
  - name: pool
    op: load
    path: $pool
    limit: 20
  - op: save
    input: pool
"""


def flags(**kw):
    base = dict(engine=None, address=None, replicas=None, gpus_per_replica=None, cpus_per_replica=None)
    return SimpleNamespace(**{**base, **kw})


def settings_of(text: str, file: str = "s.sel", overrides: list[str] = ()) -> dict:
    syntax = "sel" if file.endswith(".sel") else "yaml"
    return compile_spec(parse_text(text, file, syntax), parse_overrides(list(overrides))).settings


def errors_of(text: str, file: str = "s.sel") -> str:
    syntax = "sel" if file.endswith(".sel") else "yaml"
    with pytest.raises(ErrorList) as e:
        compile_spec(parse_text(text, file, syntax))
    return str(e.value)


@pytest.fixture
def no_config(tmp_path, monkeypatch):
    """No dslrun.yaml, wherever the tests run from."""
    monkeypatch.setenv("DSLRUN_CONFIG", str(tmp_path / "absent.yaml"))


# ---- both front-ends ----

def test_spec_settings_are_exactly_the_engine_keys_of_dslrun_yaml():
    assert set(SETTINGS) == {"engine", "address", "replicas", "gpus_per_replica", "cpus_per_replica"}
    assert set(SETTINGS) <= set(KEYS)


def test_sel_and_yaml_settings_give_the_same_ir():
    a = parse_text(SEL, "a.sel", "sel")
    b = parse_text(YAML, "b.yaml", "yaml")
    assert a.model_dump() == b.model_dump()
    assert [(s.name, s.value) for s in a.settings] == [
        ("engine", Param(name="eng")), ("address", Lit(value="head:6379")), ("replicas", Lit(value=4)),
        ("gpus_per_replica", Lit(value=0.5)), ("cpus_per_replica", Lit(value=2))]
    assert a.doc == b.doc == "header doc"
    assert a.settings[0].doc == b.settings[0].doc == "where it runs"


def test_a_bare_word_is_a_string_in_both_spellings():
    a = parse_text("engine: ray\naddress: auto\nsave(x)\n", "a.sel", "sel")
    b = parse_text("engine: ray\naddress: auto\nsteps:\n  - {op: save, input: x}\n", "b.yaml", "yaml")
    assert a.model_dump() == b.model_dump()
    assert a.settings[0].value == Lit(value="ray")


@pytest.mark.parametrize("text, names", [
    ("engine: ray\npool = load(path: $pool)\n", ["pool"]),
    ("engine: ray\nsave(top)\n", [None]),
    ("engine: ray save(top)", [None]),  # newlines are not significant
    ("replicas: 4\njudge-score(top)\n", [None]),
    ("param k = 1\naddress: \"auto\"\ntop = rank(p, by: x, top: $k)\nengine: local\n", ["top"]),
])
def test_a_setting_ends_where_its_value_does(text, names):
    spec = parse_text(text, "s.sel", "sel")
    assert [s.name for s in spec.steps] == names
    assert len(spec.settings) == (2 if "address" in text else 1)


def test_setting_spans_point_at_the_source():
    spec = parse_text(SEL, "a.sel", "sel")
    engine = spec.settings[0]
    assert (engine.name_span.line, engine.name_span.col) == (7, 1)
    assert (engine.value.span.line, engine.value.span.col) == (7, 9)
    yspec = parse_text(YAML, "b.yaml", "yaml")
    assert (yspec.settings[0].name_span.line, yspec.settings[0].name_span.col) == (7, 1)


def test_yaml_setting_after_a_header_does_not_take_the_header_as_its_doc():
    spec = parse_text("# header\n\nengine: ray\nsteps: []\n", "h.yaml", "yaml")
    assert spec.doc == "header" and spec.settings[0].doc is None


# ---- compile: values, $params, errors ----

def test_compiled_plan_exposes_the_resolved_settings():
    assert settings_of(SEL) == {"engine": "local", "address": "head:6379", "replicas": 4,
                                "gpus_per_replica": 0.5, "cpus_per_replica": 2}
    assert settings_of(YAML, "s.yaml") == settings_of(SEL)
    assert settings_of(f'p = load(path: "{POOL}")\nsave(p)\n') == {}


def test_a_param_in_a_setting_is_substituted_and_set_overrides_it():
    assert settings_of(SEL, overrides=["eng=ray"])["engine"] == "ray"
    assert settings_of(YAML, "s.yaml", overrides=["eng=ray"])["engine"] == "ray"
    text = f'param r = 2\nreplicas: $r\np = load(path: "{POOL}")\nsave(p)\n'
    assert settings_of(text, overrides=["r=8"]) == {"replicas": 8}


def test_a_bad_value_from_set_points_at_the_param_in_the_spec():
    with pytest.raises(ErrorList) as e:
        compile_spec(parse_text(SEL, "s.sel", "sel"), parse_overrides(["eng=spark"]))
    assert 's.sel:7:9: error: setting `engine` must be `local` or `ray`, not "spark" (the value of `$eng`)' \
        in str(e.value)


def test_unknown_setting_names_the_closest_one():
    text = errors_of("engin: ray\nsave(x)\n")
    assert "s.sel:1:1: error: unknown setting `engin`" in text
    assert "hint: did you mean `engine`?" in text
    text = errors_of("gpus-per-replica: 1\nsave(x)\n")
    assert "s.sel:1:1: error: unknown setting `gpus-per-replica`" in text
    assert "did you mean `gpus_per_replica`?" in text


def test_yaml_unknown_top_level_key_suggests_a_setting():
    with pytest.raises(ErrorList) as e:
        parse_text("engin: ray\nsteps: []\n", "s.yaml", "yaml")
    assert "s.yaml:1:1: error: unknown top-level key `engin`" in str(e.value)
    assert "did you mean `engine`?" in str(e.value)


@pytest.mark.parametrize("text, where, message, hint", [
    ("engine: spark\n", "1:9", 'setting `engine` must be `local` or `ray`, not "spark"', "expected one of: `local`, `ray`"),
    ("engine: rey\n", "1:9", 'setting `engine` must be `local` or `ray`, not "rey"', "did you mean `ray`?"),
    ("engine: 1\n", "1:9", "setting `engine` must be `local` or `ray`, not 1", "e.g. `engine: ray`"),
    ("replicas: 2.5\n", "1:11", "setting `replicas` must be a whole number >= 1, not 2.5", "e.g. `replicas: 4`"),
    ('replicas: "4"\n', "1:11", 'setting `replicas` must be a whole number >= 1, not "4"', None),
    ("replicas: 0\n", "1:11", "setting `replicas` must be a whole number >= 1, not 0", None),
    ("replicas: true\n", "1:11", "setting `replicas` must be a whole number >= 1, not true", None),
    ("gpus_per_replica: -1\n", "1:19", "setting `gpus_per_replica` must be a number >= 0, not -1", None),
    ("cpus_per_replica: 0\n", "1:19", "setting `cpus_per_replica` must be a number > 0, not 0", None),
    ("address: 6379\n", "1:10", "setting `address` must be a string", None),
    ('address: lower("X")\n', "1:10", "setting `address` takes a value, not an expression", None),
    ("engine: $nope\n", "1:9", "unknown parameter `$nope`", None),
])
def test_bad_setting_values_are_spec_errors_with_positions(text, where, message, hint):
    out = errors_of(text + "save(x)\n")
    assert f"s.sel:{where}: error: {message}" in out
    if hint:
        assert f"hint: {hint}" in out


def test_a_bad_yaml_setting_value_has_its_yaml_position():
    out = errors_of("steps: []\nreplicas: many\n", "s.yaml")
    assert 's.yaml:2:11: error: setting `replicas` must be a whole number >= 1, not "many"' in out


def test_a_setting_given_twice_is_an_error():
    out = errors_of("engine: ray\nreplicas: 2\nengine: local\nsave(x)\n")
    assert "s.sel:3:1: error: setting `engine` is given twice (first at line 1)" in out


def test_all_setting_errors_come_in_one_round():
    out = errors_of("engin: ray\nreplicas: 0\nsave(x)\n")
    assert "unknown setting `engin`" in out and "`replicas` must be" in out and "unknown step `x`" in out


# ---- fmt ----

def test_fmt_prints_settings_after_params_and_round_trips():
    spec = parse_text(SEL, "a.sel", "sel")
    sel = to_sel(spec)
    assert "param pool" in sel.split("engine: $eng")[0]
    assert "engine: $eng\naddress: \"head:6379\"\nreplicas: 4\n" in sel
    assert sel.index("cpus_per_replica: 2") < sel.index("pool = load")
    assert to_sel(parse_text("engine: ray\nsave(x)\n", "b.sel", "sel")) == "engine: ray\n\nsave(x)\n"
    yaml_text = to_yaml(spec)
    assert "\nengine: $eng\n" in yaml_text and yaml_text.index("replicas: 4") < yaml_text.index("steps:")
    for text, syntax in ((sel, "sel"), (yaml_text, "yaml")):
        again = parse_text(text, f"x.{syntax}", syntax)
        assert again.model_dump() == spec.model_dump()
        assert to_sel(again) == sel and to_yaml(again) == yaml_text


@pytest.mark.parametrize("text", [
    "# header\n\n# why\nengine: ray\n\nsave(x)\n",
    "# header\n\nengine: ray\n\nsave(x)\n",
    "# why\nreplicas: 2\ngpus_per_replica: 1.5\n\nsave(x)\n",
    'param a = "h:1"\n\naddress: $a\nengine: "local"\n\n# doc\nsave(x)\n',
])
def test_fmt_round_trips_settings_and_their_docs(text):
    spec = parse_text(text, "a.sel", "sel")
    for out, syntax in ((to_sel(spec), "sel"), (to_yaml(spec), "yaml")):
        assert parse_text(out, f"b.{syntax}", syntax).model_dump() == spec.model_dump(), out


def test_fmt_keeps_a_setting_written_after_the_steps_and_moves_it_up():
    spec = parse_text("save(x)\n# why ray\nengine: ray\n", "a.sel", "sel")
    assert to_sel(spec) == "# why ray\nengine: ray\n\nsave(x)\n"


# ---- precedence ----

def test_precedence_flags_then_spec_then_environment_then_dslrun_yaml_then_defaults(tmp_path, monkeypatch):
    config = tmp_path / "site.yaml"
    monkeypatch.setenv("DSLRUN_CONFIG", str(config))
    monkeypatch.delenv("DSLRUN_SPILL_ROWS", raising=False)
    monkeypatch.delenv("DSLRUN_TOKEN_BUDGET", raising=False)

    def picked(s) -> tuple:
        return s.engine, s.address, s.replicas, s.gpus_per_replica, s.cpus_per_replica, s.spill_rows, s.token_budget

    assert picked(run_settings(flags(), {})) == ("local", None, None, None, None, 100_000, 16384)
    config.write_text("engine: ray\naddress: head:6379\nreplicas: 4\ngpus_per_replica: 1\nspill_rows: 10\n"
                      "token_budget: 100\n")
    assert picked(run_settings(flags())) == ("ray", "head:6379", 4, 1, None, 10, 100)
    monkeypatch.setenv("DSLRUN_TOKEN_BUDGET", "200")  # the environment wins over the file
    assert picked(run_settings(flags())) == ("ray", "head:6379", 4, 1, None, 10, 200)
    spec = {"engine": "local", "replicas": 2, "cpus_per_replica": 3}
    assert picked(run_settings(flags(), spec)) == ("local", "head:6379", 2, 1, 3, 10, 200)  # the spec, key by key
    assert picked(run_settings(flags(engine="ray", replicas=8, token_budget=300), spec)) == (  # flags win over all
        "ray", "head:6379", 8, 1, 3, 10, 300)


def test_every_setting_has_one_name_in_flags_environment_and_file(tmp_path, monkeypatch):
    from dslrun.core.settings import RunSettings
    from dslrun.dsl.settings import SETTINGS
    from dslrun.runtime.cli import _parser

    assert set(SETTINGS) == set(RunSettings.spec_keys())  # what a spec may set, checked at compile
    run = _parser().parse_args(["run", "x.sel"])
    for name in RunSettings.model_fields:
        flag = name.removesuffix("s") if name.startswith("allow_") else name  # repeatable: --allow-path DIR
        assert hasattr(run, flag), name  # --token-budget -> token_budget
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DSLRUN_CONFIG", raising=False)
    monkeypatch.setenv("DSLRUN_MODEL_BATCH_ROWS", "7")
    args = _parser().parse_args(["run", "x.sel", "--batch-rows", "9"])
    got = run_settings(args)
    assert (got.model_batch_rows, got.batch_rows) == (7, 9)


def test_a_spec_saying_ray_chooses_ray_without_starting_it(tmp_path, monkeypatch, no_config):
    spec = tmp_path / "s.sel"
    write_pool(tmp_path / "p.json", alpaca(5))
    spec.write_text('engine: ray\nreplicas: 2\np = load(path: "p.json")\nsave(p)\n')
    plan = compile_spec(load_spec(spec))
    got = run_settings(flags(), plan.settings)
    assert (got.engine, got.address, got.replicas) == ("ray", None, 2)
    calls = []
    monkeypatch.setattr("dslrun.runtime.run.run_plan", lambda *a, **kw: calls.append(kw) or 0)
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(spec), "-q"]) == 0
    assert main(["run", str(spec), "-q", "--engine", "local"]) == 0
    assert [c["settings"].engine for c in calls] == ["ray", "local"]
    assert calls[0]["settings"].replicas == 2


def test_a_spec_saying_local_runs_locally_even_when_dslrun_yaml_says_ray(tmp_path):
    write_pool(tmp_path / "p.json", alpaca(12))
    (tmp_path / "dslrun.yaml").write_text("engine: ray\n")
    (tmp_path / "s.sel").write_text('engine: local\np = load(path: "p.json")\nl = length(p)\nsave(l)\n')
    code = ("import sys; from dslrun.runtime.cli import main; rc = main(sys.argv[1:]); "
            "print('RAY', 'ray' in sys.modules); sys.exit(rc)")
    env = {k: v for k, v in os.environ.items() if k != "DSLRUN_CONFIG"}  # the dslrun.yaml beside the spec
    r = subprocess.run([sys.executable, "-c", code, "run", "s.sel", "-q", "--out", "o"], cwd=tmp_path,
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "RAY False" in r.stdout
    assert (tmp_path / "o" / "selected.json").exists()


@pytest.mark.parametrize("command", ["check", "plan", "explain", "graph", "fmt"])
def test_static_commands_on_a_spec_with_settings_import_nothing_heavy(command, tmp_path):
    write_pool(tmp_path / "p.json", alpaca(5))
    (tmp_path / "s.sel").write_text('engine: ray\naddress: auto\np = load(path: "p.json")\nsave(p)\n')
    code = ("import sys; from dslrun.runtime.cli import main; rc = main(sys.argv[1:]); "
            "bad = [m for m in ('torch', 'transformers', 'openai', 'ray') if m in sys.modules]; "
            "print('HEAVY', bad); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, command, "s.sel"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout
