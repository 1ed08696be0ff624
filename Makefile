# Developer shortcuts. `make install-dev` installs as CI does (a lenient editable install:
# new modules are picked up without reinstalling). mypy follows the package mapping through
# tools/typecheck.py, which needs no install of its own (ARCHITECTURE.md, "Types").
PY ?= .venv/bin/python

.PHONY: venv install-dev check test test-slow bench fmt-specs

venv:
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q "torch==2.13.0+cpu" || $(PY) -m pip install -q torch

install-dev: venv
	$(PY) -m pip install -q -e ".[dev,models,llm,eval,ray,less]"

check:
	$(PY) -m ruff check dslrun core dsl operators runtime tests bench tools
	$(PY) tools/lint_imports.py
	$(PY) tools/typecheck.py

test:
	$(PY) -m pytest

test-slow:
	$(PY) -m pytest -m slow

bench:
	for b in bench/*.py; do $(PY) $$b || exit 1; done

fmt-specs:
	for s in specs/*.sel; do $(PY) -m dslrun.runtime.cli fmt $$s --to yaml -o $${s%.sel}.yaml; done
