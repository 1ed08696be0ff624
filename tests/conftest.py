"""Shared pytest setup: makes tests/testkit importable as ``testkit``."""

import sys
from pathlib import Path

TESTS = Path(__file__).parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import pytest  # noqa: E402

from testkit.cli import SHARED  # noqa: E402

GGUF = SHARED / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    """One model cache for the session: the offline GGUF is converted once, not once per module."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    if not GGUF.exists():
        pytest.skip("../shared/models is not present")
    return tmp_path_factory.mktemp("models")
