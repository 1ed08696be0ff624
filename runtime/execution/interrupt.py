"""Ctrl-C: the first stops sending new work and lets what is in flight land in the cache; the second quits.

The first SIGINT sets ``requested``, tells every running API pool to stop (replies in
flight are delivered and cached; requests not sent become "not run"), and sample
operators stop between batches (a batch being computed is finished and committed).
The run then ends with exit code 130 and a line on how to resume. If that takes longer
than ``grace`` seconds, or on a second SIGINT, the process exits at once (130, no
traceback): everything committed so far stays in the cache either way.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

EXIT_INTERRUPTED = 130
DEFAULT_GRACE = 60.0


class Interrupted(Exception):
    """Raised in a step when the run was interrupted: what it computed is cached."""


class Controller:
    def __init__(self) -> None:
        self.requested = threading.Event()
        self._stops: dict[int, Callable[[], None]] = {}
        self._lock = threading.Lock()
        self._next = 0

    def register(self, stop: Callable[[], None]) -> int:
        """``stop`` is called on the first Ctrl-C (at once if it came already)."""
        with self._lock:
            self._next += 1
            self._stops[self._next] = stop
            token = self._next
        if self.requested.is_set():
            stop()
        return token

    def unregister(self, token: int) -> None:
        with self._lock:
            self._stops.pop(token, None)

    @contextmanager
    def stopping(self, stop: Callable[[], None]) -> Iterator[None]:
        token = self.register(stop)
        try:
            yield
        finally:
            self.unregister(token)

    def request(self) -> None:
        self.requested.set()
        with self._lock:
            stops = list(self._stops.values())
        for stop in stops:
            stop()

    def check(self) -> None:
        if self.requested.is_set():
            raise Interrupted("interrupted")

    def reset(self) -> None:
        self.requested.clear()
        with self._lock:
            self._stops.clear()


CONTROLLER = Controller()


def _quit_now(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)  # no traceback, no waiting on worker threads; committed rows are safe


def _ignore(signum: int, frame: Any) -> None:
    """The Python-level handler: present so that CPython's C-level one runs and writes the wakeup fd."""


_END = 0  # no signal has the number 0: the run's end writes it (a forked child may hold the pipe open)


def _read_signals(fd: int, on_sigint: Callable[[], None]) -> None:
    while True:
        for signum in os.read(fd, 64):
            if signum == _END:
                return
            if signum == signal.SIGINT:
                on_sigint()


@contextmanager
def sigint_handler(grace: float = DEFAULT_GRACE, write: Callable[[str], Any] | None = None) -> Iterator[Controller]:
    """Install the two-stage Ctrl-C handler for the duration of a run (main thread only).

    CPython runs a Python signal handler in the main thread only, once that thread runs bytecode
    again; the kernel hands a Ctrl-C to any thread of the process, and when a worker takes it, a
    main thread blocked waiting for steps is not woken (a first Ctrl-C went unanswered, a second
    waited out the grace: seen on CI). So the handler's work is done by a thread of its own that
    reads the wakeup fd, which CPython's C-level handler writes in whichever thread took the signal.
    """
    write = write or (lambda s: print(s, file=sys.stderr, flush=True))
    CONTROLLER.reset()
    count = [0]

    def on_sigint() -> None:
        count[0] += 1
        if count[0] > 1:
            _quit_now("interrupted again: exiting now; everything cached so far is kept (run again to resume)")
        CONTROLLER.request()  # first: once the line below is out, it holds
        write(f"interrupt: no new work is sent; waiting up to {grace:g}s for replies and batches in flight to "
              "land in the cache (Ctrl-C again to quit now)")
        timer = threading.Timer(grace, _quit_now, args=(f"interrupt: still busy after {grace:g}s: exiting now; "
                                                        "everything cached so far is kept (run again to resume)",))
        timer.daemon = True
        timer.start()

    if threading.current_thread() is not threading.main_thread():  # e.g. embedded: leave signals alone
        yield CONTROLLER
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # set_wakeup_fd's requirement: a signal handler never blocks
    reader = threading.Thread(target=_read_signals, args=(read_end, on_sigint), name="dslrun-sigint", daemon=True)
    reader.start()
    previous = signal.signal(signal.SIGINT, _ignore)
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    try:
        yield CONTROLLER
    finally:
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGINT, previous)
        os.write(write_end, bytes([_END]))
        reader.join()
        os.close(write_end)
        os.close(read_end)
