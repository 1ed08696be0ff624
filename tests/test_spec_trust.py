"""The trust boundary (dsl/trust.py): what a spec written by someone else may read, write and run."""

from __future__ import annotations

import os

import pytest

from dslrun.core.errors import ErrorList
from dslrun.dsl.compile import compile_spec
from dslrun.dsl.load import load_spec
from dslrun.dsl.trust import Trust
from dslrun.runtime import cli


def _spec(folder, body: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pool.json").write_text('[{"instruction": "a", "output": "b"}]')
    path = folder / "s.sel"
    path.write_text('pool = load(path: "pool.json")\n' + body)
    return path


def _errors(path, **kw):
    with pytest.raises(ErrorList) as info:
        compile_spec(load_spec(path), cwd=path.parent, **kw)
    return info.value.errors


def test_template_file_outside_is_a_spec_error_naming_the_flag(tmp_path):
    path = _spec(tmp_path / "spec", 'judge-score(pool, template: custom, template_file: "/etc/passwd")\n')
    (err,) = _errors(path)
    assert "reads /etc/passwd, outside the spec's folder" in err.message
    assert "--allow-path /etc" in err.hint and err.span.line == 2


def test_relative_escape_and_symlink_out_are_caught(tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.json").write_text("[]")
    spec_dir = tmp_path / "spec"
    path = _spec(spec_dir, 'other = load(path: "../secret/key.json")\nlinked = load(path: "link.json")\n')
    os.symlink(secret / "key.json", spec_dir / "link.json")
    errors = _errors(path, trust=Trust())
    assert [e.span.line for e in errors] == [2, 3]
    assert all("outside the spec's folder" in e.message for e in errors)
    compile_spec(load_spec(path), cwd=spec_dir, trust=Trust(allow_paths=(secret,)))  # named: allowed


def test_save_outside_out_is_a_spec_error(tmp_path):
    for target in ("/abs/x.json", "../../x.json", "a/../../x.json"):
        path = _spec(tmp_path / "spec", f'save(pool, path: "{target}")\n')
        (err,) = _errors(path)
        assert "`path` writes to" in err.message and err.span.line == 2
    path = _spec(tmp_path / "spec", 'save(pool, path: "sub/../x.json")\n')
    compile_spec(load_spec(path), cwd=path.parent)


def test_code_named_by_a_spec_needs_allow_code(tmp_path):
    path = _spec(tmp_path / "spec", 'evaluate(pool, benchmarks: ["os:system"])\n')
    errors = _errors(path)
    assert any("names Python code" in e.message and "--allow-code" in e.hint for e in errors)
    with pytest.raises(ErrorList) as info:
        compile_spec(load_spec(path), cwd=path.parent, trust=Trust(allow_code=True))
    assert not any("names Python code" in e.message for e in info.value.errors)


def test_cli_allow_path_flag_and_config(tmp_path, monkeypatch, capsys):
    outside = tmp_path / "data"
    outside.mkdir()
    (outside / "p.json").write_text('[{"instruction": "a", "output": "b"}]')
    path = _spec(tmp_path / "spec", f'more = load(path: "{outside / "p.json"}")\n')
    monkeypatch.chdir(tmp_path / "spec")
    monkeypatch.setenv("DSLRUN_CONFIG", str(tmp_path / "none.yaml"))
    assert cli.main(["check", str(path)]) == cli.EXIT_SPEC
    assert "--allow-path" in capsys.readouterr().err
    assert cli.main(["check", str(path), "--allow-path", str(outside)]) == cli.EXIT_OK
    (tmp_path / "dslrun.yaml").write_text(f"allow_paths: [{outside}]\n")
    monkeypatch.setenv("DSLRUN_CONFIG", str(tmp_path / "dslrun.yaml"))
    assert cli.main(["check", str(path)]) == cli.EXIT_OK


def test_a_value_given_with_set_is_the_users_own(tmp_path, monkeypatch):
    outside = tmp_path / "data"
    outside.mkdir()
    (outside / "p.json").write_text("[]")
    path = _spec(tmp_path / "spec", 'param extra = "pool.json"\nmore = load(path: $extra)\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DSLRUN_CONFIG", str(tmp_path / "none.yaml"))
    assert cli.main(["check", str(path), "--set", f"extra={outside / 'p.json'}"]) == cli.EXIT_OK
