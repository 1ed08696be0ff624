"""A slowed-down ``perplexity`` for the Ray engine's kill test.

It computes exactly what ``perplexity`` computes (same cache fingerprint inputs, so
outputs can be compared with the local engine's), after a delay per batch, and
appends ``<pid> <sample id>`` per computed sample to $RAY_OPS_LOG: the test reads
a worker's pid from it to kill that worker, and counts how often each sample ran. While
the file named by $RAY_OPS_HOLD exists and holds a number N, a batch that finds N or more
samples logged waits: the test kills a replica or the driver mid-step on any machine, however
busy, then removes the file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import Field

from dslrun.operators.perplexity import Perplexity, PerplexityParams
from dslrun.operators.registry import register


class SlowPerplexityParams(PerplexityParams):
    delay: float = Field(0.0, ge=0, description="seconds to sleep per batch")


@register
class SlowPerplexity(Perplexity):
    """perplexity, slowed down per batch, logging which process computed what."""

    name = "slow-perplexity"
    params_type = SlowPerplexityParams
    params: SlowPerplexityParams

    def compute(self, batch, ctx):
        out = super().compute(batch, ctx)
        time.sleep(self.params.delay)
        log = os.environ.get("RAY_OPS_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as f:
                f.write("".join(f"{os.getpid()} {sid}\n" for sid in batch.ids))
                f.flush()
                os.fsync(f.fileno())
        while self._held(log):
            time.sleep(0.01)
        return out

    @staticmethod
    def _held(log: str | None) -> bool:
        hold = os.environ.get("RAY_OPS_HOLD")
        try:
            after = int(Path(hold).read_text()) if hold else None
        except FileNotFoundError:
            return False
        return after is not None and log is not None and len(Path(log).read_text().splitlines()) >= after
