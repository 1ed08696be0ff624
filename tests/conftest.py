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


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random GPT-2 saved as a Hugging Face folder (one per test module)."""
    from testkit.tiny_lm import save_tiny_lm

    return save_tiny_lm(tmp_path_factory.mktemp("tiny") / "gpt2")


@pytest.fixture(scope="module")
def lm(tiny):
    """The tiny model and its tokenizer, loaded."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny).eval(), AutoTokenizer.from_pretrained(tiny)
