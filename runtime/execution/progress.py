"""Progress for long work: rich bars on a terminal, log lines elsewhere.

On a TTY each node gets a bar. Under ``nohup``, CI or a cluster scheduler a bar draws
nothing, so ``LogProgress`` writes one line per active step every ``interval`` seconds
(done/total, rate, ETA, cached, failed), plus a line when a step starts and ends. Its
clock and its ticks are injectable: ``tick()`` is what the background ticker calls.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

DEFAULT_INTERVAL = 30.0


class Task:
    def __init__(self, progress: RichProgress, task_id, lock: threading.Lock):
        self._p, self._id, self._lock = progress, task_id, lock

    def advance(self, n: int, failed: int = 0) -> None:
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

    def task(self, name: str, total: int, cached: int = 0) -> Task:
        with self._lock:
            tid = self._p.add_task(name, total=total, rate="")
        return Task(self._p, tid, self._lock)


def duration(seconds: float) -> str:
    s = int(round(seconds))
    h, m = s // 3600, s % 3600 // 60
    return f"{h}h{m:02d}m" if h else f"{m}m{s % 60:02d}s" if m else f"{s}s"


class LogTask:
    def __init__(self, owner: LogProgress, name: str, total: int, cached: int):
        self.owner, self.name, self.total, self.cached = owner, name, total, cached
        self.done_n = self.failed = 0
        self.started = self.last = owner.clock()
        self.finished = False

    def advance(self, n: int, failed: int = 0) -> None:
        with self.owner.lock:
            self.done_n += n
            self.failed += failed

    def done(self) -> None:
        with self.owner.lock:
            if self.finished:
                return
            self.finished = True
            took = self.owner.clock() - self.started
            rate = f", {self.done_n / took:,.1f}/s" if took > 0 and self.done_n else ""
            line = f"{self.name}: finished {self.done_n}/{self.total} in {duration(took)}{rate}{self._counts()}"
        self.owner.write(line)

    def _counts(self) -> str:
        return f", {self.cached} cached" + (f", {self.failed} failed" if self.failed else "")

    def line(self, now: float) -> str:
        took = now - self.started
        rate = self.done_n / took if took > 0 else 0.0
        left = self.total - self.done_n
        eta = f", ETA {duration(left / rate)}" if rate > 0 else ", ETA ?"
        pct = 100 * self.done_n / self.total if self.total else 100.0
        return f"{self.name}: {self.done_n}/{self.total} ({pct:.0f}%), {rate:,.1f}/s{eta}{self._counts()}"


class LogProgress:
    """One line per running step every ``interval`` seconds (``--progress-interval``)."""

    def __init__(self, interval: float = DEFAULT_INTERVAL, clock: Callable[[], float] = time.monotonic,
                 write: Callable[[str], None] | None = None, ticker: bool = True):
        self.interval, self.clock = interval, clock
        self.write = write or (lambda line: print(f"progress {line}", file=sys.stderr, flush=True))
        self.lock = threading.Lock()
        self.tasks: list[LogTask] = []
        self._ticker = ticker and interval > 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LogProgress:
        if self._ticker:
            self._thread = threading.Thread(target=self._run, name="dslrun-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(min(self.interval, 1.0)):
            self.tick()

    def task(self, name: str, total: int, cached: int = 0) -> LogTask:
        t = LogTask(self, name, total, cached)
        with self.lock:
            self.tasks.append(t)
        self.write(f"{name}: {total} to compute, {cached} cached")
        return t

    def tick(self) -> None:
        """A line for every unfinished step whose last line is ``interval`` seconds old."""
        now = self.clock()
        lines = []
        with self.lock:
            self.tasks = [t for t in self.tasks if not t.finished]
            for t in self.tasks:
                if now - t.last >= self.interval:
                    t.last = now
                    lines.append(t.line(now))
        for line in lines:
            self.write(line)


def make_progress(interval: float = DEFAULT_INTERVAL, tty: bool | None = None) -> Progress | LogProgress:
    """Bars on a terminal, log lines every ``interval`` seconds elsewhere."""
    if tty is None:
        tty = sys.stderr.isatty()
    return Progress() if tty else LogProgress(interval)
