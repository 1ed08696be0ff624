"""Progress bars (rich) for long work: one bar per node, with samples/s."""

from __future__ import annotations

import sys
import threading

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress


class Task:
    def __init__(self, progress: RichProgress, task_id, lock: threading.Lock):
        self._p, self._id, self._lock = progress, task_id, lock

    def advance(self, n: int) -> None:
        with self._lock:
            self._p.advance(self._id, n)
            speed = self._p.tasks[self._id].speed
            if speed:
                self._p.update(self._id, rate=f"{speed:,.1f} samples/s")

    def done(self) -> None:
        with self._lock:
            self._p.update(self._id, completed=self._p.tasks[self._id].total)


class Progress:
    def __init__(self, console: Console | None = None):
        self.console = console or Console(file=sys.stderr)
        self._p = RichProgress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
            TextColumn("[cyan]{task.fields[rate]}"),
            TimeRemainingColumn(), console=self.console, transient=False,
        )
        self._lock = threading.Lock()

    def __enter__(self) -> Progress:
        self._p.start()
        return self

    def __exit__(self, *exc) -> None:
        self._p.stop()

    def task(self, name: str, total: int) -> Task:
        with self._lock:
            tid = self._p.add_task(name, total=total, rate="")
        return Task(self._p, tid, self._lock)
