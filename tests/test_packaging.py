"""The built wheel holds every subpackage and data file; bare imports are refused."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"dslrun": "dslrun", "core": "dslrun/core", "dsl": "dslrun/dsl", "operators": "dslrun/operators", "runtime": "dslrun/runtime"}
DATA_SUFFIXES = (".lark", ".txt", ".json", ".jinja")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(REPO)], check=True, capture_output=True, text=True)
    (path,) = out.glob("dslrun-*.whl")
    return zipfile.ZipFile(path)


def expected_files() -> set[str]:
    files = set()
    for folder, target in ROOTS.items():
        for p in (REPO / folder).rglob("*"):
            if "__pycache__" in p.parts or not p.is_file():
                continue
            if p.suffix == ".py" or (p.suffix in DATA_SUFFIXES and (p.parent / "__init__.py").exists()):
                files.add(f"{target}/{p.relative_to(REPO / folder).as_posix()}")
    return files


def test_wheel_contains_every_module_and_data_file(wheel):
    names = set(wheel.namelist())
    missing = expected_files() - names
    assert not missing, f"missing from the wheel: {sorted(missing)}"
    assert "dslrun/dsl/grammar.lark" in names
    assert not any(n.startswith(("core/", "dsl/", "operators/", "runtime/", "tests/")) for n in names)
    assert "dslrun/__init__.py" in names  # the Python API's front door


def test_the_installed_wheel_imports_light_and_checks_a_spec(wheel, tmp_path):
    """Installed from the wheel (not this checkout): ``import dslrun`` loads no compiler and no
    torch, and ``dslrun.check`` finds a spec's errors with the wheel's own grammar."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                    str(target), wheel.filename], check=True, capture_output=True, text=True)
    code = (
        "import sys, dslrun\n"
        "assert dslrun.__file__.startswith(sys.argv[1]), dslrun.__file__\n"
        "assert not any(m.startswith(('torch', 'dslrun.dsl', 'dslrun.runtime')) for m in sys.modules)\n"
        "errs = dslrun.check('p = load(path: \"nowhere.json\")\\nsave(p, formt: json)\\n')\n"
        "print(sorted(e.message for e in errs))\n"
        "assert dslrun.runtime.__file__.startswith(sys.argv[1])\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(target)], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(target)})
    assert r.returncode == 0, r.stderr
    assert "file not found: nowhere.json" in r.stdout and "formt" in r.stdout


def test_console_script_entry_point(wheel):
    ep = next(n for n in wheel.namelist() if n.endswith("entry_points.txt"))
    assert "dslrun = dslrun.runtime.cli:main" in wheel.read(ep).decode()


@pytest.mark.parametrize("bare", ["operators", "runtime", "dsl"])
def test_bare_import_of_a_top_level_folder_is_refused(bare):
    r = subprocess.run([sys.executable, "-c", f"import {bare}"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode != 0
    assert f"import dslrun.{bare}" in r.stderr
