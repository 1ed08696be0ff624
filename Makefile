# Developer shortcuts. `make install-dev` uses setuptools' strict editable mode so
# type checkers and IDEs see the real dslrun/ tree (a link farm under build/);
# re-run it after adding a module. Plain `pip install -e .` (lenient mode) picks
# up new modules without reinstalling.
PY ?= .venv/bin/python

.PHONY: venv install-dev check test test-slow bench fmt-specs

venv:
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q "torch==2.13.0+cpu" || $(PY) -m pip install -q torch

install-dev: venv
	$(PY) -m pip install -q -e ".[dev,models,llm,eval,ray]" --config-settings editable_mode=strict

check:
	$(PY) -m ruff check core dsl operators runtime tests bench tools
	$(PY) tools/lint_imports.py
	$(PY) -m mypy dsl operators runtime

test:
	$(PY) -m pytest

test-slow:
	$(PY) -m pytest -m slow

bench:
	for b in bench/*.py; do $(PY) $$b || exit 1; done

fmt-specs:
	for s in specs/*.sel; do $(PY) -m dslrun.runtime.cli fmt $$s --to yaml -o $${s%.sel}.yaml; done
