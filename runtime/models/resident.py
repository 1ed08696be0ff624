"""The model pool: each local model is loaded once, shared by every node that needs it.

One model is resident at a time (the executor serialises model nodes); asking
for a different one frees the current one first, so two nodes on the same
model — ``ifd`` and ``perplexity`` on SmolLM2, say — share one load. Resolution
(alias → local files → content identity) never imports torch, so cache keys and
``dslrun plan`` stay cheap.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dslrun.runtime.models.resolve import Kind, ResolvedModel

log = logging.getLogger("dslrun.models")


def model_cache_dir() -> Path:
    """Converted checkpoints and downloaded weights; shared by projects (they are large)."""
    env = os.environ.get("DSLRUN_MODEL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "dslrun" / "models"


_RESOLVED: dict[tuple[str, str], Any] = {}
_RESOLVE_LOCK = threading.Lock()


def resolve(spec: str, kind: Kind) -> ResolvedModel:
    """Resolve once per process; logs which source was used."""
    from dslrun.runtime.models import resolve_model

    key = (spec, kind)
    with _RESOLVE_LOCK:
        if key not in _RESOLVED:
            found = resolve_model(spec, kind, model_cache_dir())
            log.info("model %s: %s (from %s)", spec, found.path, found.source)
            _RESOLVED[key] = found
        return _RESOLVED[key]


def identity(spec: str, kind: Kind) -> str:
    return resolve(spec, kind).identity


class ModelPool:
    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: Any = None
        self._lock = threading.Lock()
        self.loads = 0

    def causal_lm(self, spec: str, device: str = "auto", dtype: str = "auto") -> tuple[Any, Any]:
        from dslrun.runtime.models import load_causal_lm

        return self._get(("causal-lm", spec, device, dtype),
                         lambda: load_causal_lm(resolve(spec, "causal-lm"), device=device, dtype=dtype))

    def reward_model(self, spec: str, device: str = "auto", dtype: str = "auto") -> tuple[Any, Any]:
        """A sequence classifier whose first logit scores a (question, answer) pair."""
        from dslrun.runtime.models import load_reward_model

        return self._get(("reward-model", spec, device, dtype),
                         lambda: load_reward_model(resolve(spec, "causal-lm"), device=device, dtype=dtype))

    def sentence_encoder(self, spec: str, device: str = "auto") -> Any:
        from dslrun.runtime.models import load_sentence_encoder

        return self._get(("sentence-encoder", spec, device),
                         lambda: load_sentence_encoder(resolve(spec, "sentence-encoder"), device=device))

    def _get(self, key: tuple, load) -> Any:
        with self._lock:
            if self._key != key:
                self.release()
                log.info("loading %s %s", key[0], key[1])
                self._value, self._key = load(), key
                self.loads += 1
            return self._value

    def release(self) -> None:
        if self._value is None:
            return
        self._value, self._key = None, None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass


def is_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()
