"""Virtual time for rate limiters: it moves only when the test says so.

``SteppedClock`` is a clock (``clock()``) and a sleep (``await clock.sleep(s)``) for
``RateLimiter(clock=..., sleep=...)``. A sleeper wakes when the test advances time past
its wake-up time, in whatever thread and event loop it sleeps. ``wait_until(pred)``
blocks the test until a condition over the sleepers holds (it is re-checked whenever a
sleeper comes or goes, or ``notify()`` is called), so a test can let a run settle at
one virtual instant, look at what was sent, then advance: what it sees does not depend
on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable


class SteppedClock:
    def __init__(self, start: float = 0.0):
        self.t = start
        self._cond = threading.Condition()
        self._sleepers: list[tuple[float, asyncio.AbstractEventLoop, asyncio.Future]] = []

    def __call__(self) -> float:
        return self.t

    @property
    def sleeping(self) -> int:
        with self._cond:
            return len(self._sleepers)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        entry = (self.t + seconds, loop, loop.create_future())
        with self._cond:
            self._sleepers.append(entry)
            self._cond.notify_all()
        try:
            await entry[2]
        finally:
            with self._cond:
                if entry in self._sleepers:
                    self._sleepers.remove(entry)
                self._cond.notify_all()

    def advance(self, to: float) -> None:
        """Set the time to ``to`` and wake every sleeper due by then."""
        with self._cond:
            self.t = to
            due = [e for e in self._sleepers if e[0] <= to + 1e-9]  # wake-up times are float sums
            for e in due:
                self._sleepers.remove(e)
            self._cond.notify_all()
        for _, loop, fut in due:
            loop.call_soon_threadsafe(lambda f=fut: f.done() or f.set_result(None))

    def notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def wait_until(self, pred: Callable[[], bool], timeout: float = 120.0) -> None:
        """Block until ``pred()`` holds (``timeout`` only guards against a hang)."""
        with self._cond:
            if not self._cond.wait_for(pred, timeout):
                raise TimeoutError("the run did not settle")
