"""The import layers hold (pyproject.toml [tool.importlinter]): core at the bottom, runtime
services below the operators, execution and the CLI on top (tools/layers.py runs lint-imports
on the package laid out as installed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    if not (shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")):
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "layers.py")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout
