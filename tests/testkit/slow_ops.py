"""A deliberately slow per-sample operator for kill-and-resume tests.

Every computed sample id is appended to the file named by $SLOW_SCORE_LOG, so
a test can count how often each sample was paid for. With $SLOW_SCORE_HOLD_AFTER=N the
step stops once N ids are logged and waits there for good: a test that kills the run then
kills it mid-run on every machine, however busy.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

from pydantic import Field

from dslrun.core.columns import FLOAT
from dslrun.core.cost import Resource
from dslrun.core.params import Params
from dslrun.operators.base import SampleOperator
from dslrun.operators.registry import register


class SlowScoreParams(Params):
    delay: float = Field(0.05, ge=0, description="seconds per batch")


@register
class SlowScore(SampleOperator[SlowScoreParams]):
    """score = a deterministic hash of the sample id, after a delay."""

    name = "slow-score"
    produces = {"slow_score": FLOAT}

    def compute(self, batch, ctx):
        time.sleep(self.params.delay)
        log = os.environ.get("SLOW_SCORE_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as f:
                f.write("".join(f"{sid}\n" for sid in batch.ids))
                f.flush()
                os.fsync(f.fileno())
            hold = os.environ.get("SLOW_SCORE_HOLD_AFTER")
            if hold is not None and len(Path(log).read_text().splitlines()) >= int(hold):
                threading.Event().wait()  # until the test kills the run
        return [{"slow_score": int(hashlib.sha256(sid.encode()).hexdigest()[:6], 16) / 0xFFFFFF}
                for sid in batch.ids]


class SlowModelParams(Params):
    seconds: float = Field(1.0, ge=0, description="seconds the whole step holds the 'model' (at most, with until)")
    until: str | None = Field(None, description="hold it until this file exists (a test's event), or seconds pass")


@register
class SlowModel(SampleOperator[SlowModelParams]):
    """A stand-in for a local model step: holds the model slot for a while and writes the
    ``time.monotonic()`` of its start and end to $SLOW_MODEL_LOG."""

    name = "slow-model"
    resource = Resource.MODEL
    produces = {"slow_model": FLOAT}

    def compute(self, batch, ctx):
        start = time.monotonic()
        if self.params.until is None:
            time.sleep(self.params.seconds)
        while self.params.until is not None and not os.path.exists(self.params.until) \
                and time.monotonic() - start < self.params.seconds:
            time.sleep(0.01)
        log = os.environ.get("SLOW_MODEL_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as f:
                f.write(f"{start} {time.monotonic()}\n")
        return [{"slow_model": 1.0} for _ in batch.ids]
