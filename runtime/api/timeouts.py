"""How long one attempt may take, and what a timed-out attempt costs.

A fixed timeout cannot fit every server: 60 s is ample for a short judgement from OpenAI
and far too short for 512 tokens from a CPU vLLM with 16 calls in flight, where requests
outlived it, were sent again while the server still worked on the first copies, and
throughput collapsed. So the attempt timeout is one of:

* **off** for a loopback server (``localhost``, ``127.0.0.0/8``, ``::1``): the server is ours,
  a slow reply is still coming, and giving up on it would only make the server do the work
  twice. A loopback server that fails says so (5xx, a closed connection), and only then is
  the call retried. Nothing hangs for ever unnoticed: the run's progress line shows it.
* **fixed** when the step sets ``timeout``;
* **derived** otherwise: ``margin × p95(seconds per completion token) × max_tokens`` over
  the replies seen so far (at least ``floor``); before ``min_samples`` replies,
  ``initial``. A reply's seconds per token include its queueing and prefill, which only
  lengthens the timeout.

A timed-out attempt on a remote server may still be running there, and may be billed. The
rule: the attempt is abandoned (its connection closed, which makes vLLM and llama.cpp abort
it), its worst-case cost (prompt + ``max_tokens``) stays charged to the budget as if it had
been paid, so ``max_cost`` holds even when the provider bills both it and its retry; and
each retry of a request that timed out gets twice the previous timeout, so no request is
abandoned twice at a deadline it could not meet. A timeout also halves the concurrency
(``adaptive.py``), which makes the retry's copy faster. Errors the server sends (429, 5xx)
say the request failed there: they charge nothing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlparse


def is_loopback(url: str | None) -> bool:
    """Whether ``url`` names this machine (``localhost``, 127.0.0.0/8, ::1)."""
    from dslrun.runtime.api.endpoints import loopback_host

    return loopback_host(urlparse(url or "").hostname or "")


@dataclass
class AttemptTimeouts:
    mode: str = "derived"  # off | fixed | derived
    fixed: float | None = None
    floor: float = 30.0
    margin: float = 3.0
    initial: float = 120.0
    min_samples: int = 5
    _per_token: deque = field(default_factory=lambda: deque(maxlen=500), init=False)

    @classmethod
    def for_endpoint(cls, base_url: str | None, timeout: float | None) -> AttemptTimeouts:
        if timeout is not None:
            return cls("fixed", fixed=timeout)
        return cls("off") if is_loopback(base_url) else cls("derived")

    def observe(self, seconds: float, output_tokens: int) -> None:
        """A reply came in ``seconds`` with ``output_tokens`` completion tokens."""
        self._per_token.append(seconds / max(1, output_tokens))

    def seconds(self, max_tokens: int, timeouts_so_far: int = 0) -> float | None:
        """The timeout of the next attempt of a request that already timed out ``timeouts_so_far`` times."""
        if self.mode == "off":
            return None
        if self.mode == "fixed":
            base = float(self.fixed or 0.0)
        elif len(self._per_token) < self.min_samples:
            base = max(self.floor, self.initial)
        else:
            ranked = sorted(self._per_token)
            p95 = ranked[min(len(ranked) - 1, int(0.95 * len(ranked)))]
            base = max(self.floor, self.margin * p95 * max_tokens)
        return base * 2 ** timeouts_so_far

    def describe(self) -> str:
        return {"off": "no attempt timeout (loopback server)", "fixed": f"attempt timeout {self.fixed:g}s"}.get(
            self.mode, f"attempt timeout derived from max_tokens (at least {self.floor:g}s)")
