"""A run's budget: how many calls and how much money it may spend, checked before each call.

Every call reserves its worst case (estimated prompt tokens + ``max_tokens`` at the
price table's rates) before it is made; the reservation is replaced by the real
cost when the reply arrives. A call that does not fit waits while calls in flight
may still free room, and when none are in flight the budget is exhausted: the pool
stops dispatching. So ``max_cost`` is never exceeded as long as replies respect
``max_tokens`` and prompts are no denser than 3 characters a token.
"""

from __future__ import annotations

import asyncio
from typing import Any


def estimate_input_tokens(messages: list[dict[str, Any]]) -> int:
    """On the high side: 3 characters a token (English averages about 4), plus the chat
    template's few tokens per message. Reservations are settled with the real counts."""
    chars = sum(len(str(m.get("content", ""))) for m in messages)
    return chars // 3 + 4 * len(messages) + 3


class BudgetTracker:
    """Reservations against ``max_calls`` / ``max_cost``; lives on one event loop."""

    def __init__(self, max_calls: int | None, max_cost: float | None):
        self.max_calls, self.max_cost = max_calls, max_cost
        self.calls, self.spent, self.reserved, self.in_flight = 0, 0.0, 0.0, 0
        self.exhausted = False
        self._changed = asyncio.Event()

    async def reserve(self, est_cost: float) -> bool:
        while True:
            if self.exhausted:
                return False
            calls_ok = self.max_calls is None or self.calls < self.max_calls
            cost_ok = self.max_cost is None or self.spent + self.reserved + est_cost <= self.max_cost
            if calls_ok and cost_ok:
                self.calls += 1
                self.reserved += est_cost
                self.in_flight += 1
                return True
            if not calls_ok or self.in_flight == 0:
                self.exhausted = True
                self._notify()
                return False
            await self._changed.wait()  # a call in flight may cost less than its reservation

    def settle(self, est_cost: float, cost: float) -> None:
        self.reserved -= est_cost
        self.spent += cost
        self.in_flight -= 1
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
