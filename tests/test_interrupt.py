"""Ctrl-C: the first lets replies in flight land in the cache and exits 130 with how to resume;
the second exits at once. Signals are sent on events (requests reaching the server), never on timers.

A terminal's Ctrl-C goes to the process and the kernel hands it to any of its threads; the tests
that send it to one worker thread (tgkill) pin the case a plain kill reaches only by chance."""

from __future__ import annotations

import ctypes
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from testkit.cli import write_pool
from testkit.openai_server import OpenAITestServer

SPEC = """pool = load(path: "pool.json")
rated = judge-score(pool, template: alpagasus, model: test-model, base_url: "{url}", api_key_env: K,
                    concurrency: 4, max_attempts: 1)
save(rated)
"""


TGKILL = {"x86_64": 234, "aarch64": 131}.get(platform.machine())  # syscall numbers


def takes_sigint(pid: int, tid: int) -> bool:
    status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
    blocked = int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16)
    return not blocked & (1 << (signal.SIGINT - 1))


def to_a_worker_thread(proc):
    """Ctrl-C as the kernel may deliver it: to a thread of the run other than the main one."""
    tids = sorted(int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid)
    tid = next(t for t in tids if takes_sigint(proc.pid, t))  # the oldest: a pool's, alive to the end
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.syscall(TGKILL, proc.pid, tid, signal.SIGINT) == 0, os.strerror(ctypes.get_errno())


def to_the_process(proc):
    proc.send_signal(signal.SIGINT)


SENDERS = [to_the_process, pytest.param(to_a_worker_thread, marks=pytest.mark.skipif(
    TGKILL is None or not os.path.isdir("/proc/self/task"), reason="tgkill: Linux on x86_64 or aarch64"))]


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_run_outlives_its_test():
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start(tmp_path, srv):
    write_pool(tmp_path / "pool.json", [{"instruction": f"Explain idea {i}.", "input": "", "output": f"Idea {i}."}
                                        for i in range(20)])
    (tmp_path / "s.sel").write_text(SPEC.format(url=srv.base_url))
    proc = subprocess.Popen([sys.executable, "-m", "dslrun.runtime.cli", "s.sel", "--out", "o", "-q"],
                            cwd=tmp_path, env={**os.environ, "K": "x"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    STARTED.append(proc)
    return proc


def until(cond, proc) -> None:
    """Wait for an event in the other process (a safety bound only; nothing is asserted about time)."""
    deadline = time.monotonic() + 120
    while not cond():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the event never came"
        time.sleep(0.02)


def watch(proc, text: str) -> tuple[threading.Event, list[str], threading.Thread]:
    """The process's stderr lines as they come, and an event set when one contains ``text``."""
    seen, lines = threading.Event(), []

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if text in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return seen, lines, reader


@pytest.mark.parametrize("interrupt", SENDERS)
def test_first_ctrl_c_caches_what_is_in_flight_and_says_how_to_resume(tmp_path, interrupt):
    hold = threading.Event()
    with OpenAITestServer(gate=hold) as srv:
        proc = start(tmp_path, srv)
        acknowledged, lines, reader = watch(proc, "interrupt: no new work is sent")
        until(lambda: srv.stats().total == 4, proc)  # 4 in flight (concurrency), held at the server
        interrupt(proc)
        # The replies in flight land after the run has taken the interrupt (it says so): released
        # before, one could free a slot and a fifth request go out first (it did, on a busy machine).
        until(acknowledged.is_set, proc)
        hold.set()
        proc.wait(timeout=120)
        reader.join(timeout=120)
        err = "".join(lines)
        assert proc.returncode == 130, err
        assert srv.stats().total == 4  # nothing new was sent after Ctrl-C
        assert "Traceback" not in err
        assert "rated: 4 computed and cached in this run, 0 were cached before, 16 left" in err, err
        assert "resume: run the same command again" in err and "dslrun s.sel --out o -q" in err
        again = subprocess.run([sys.executable, "-m", "dslrun.runtime.cli", "s.sel", "--out", "o", "-q"],
                               cwd=tmp_path, env={**os.environ, "K": "x"}, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        assert srv.stats().total == 20  # the resumed run sent only the 16 that were missing


@pytest.mark.parametrize("interrupt", SENDERS)
def test_second_ctrl_c_exits_at_once_without_a_traceback(tmp_path, interrupt):
    hold = threading.Event()
    with OpenAITestServer(gate=hold) as srv:
        proc = start(tmp_path, srv)
        acknowledged, lines, reader = watch(proc, "interrupt: no new work is sent")
        until(lambda: srv.stats().total == 4, proc)
        interrupt(proc)
        until(acknowledged.is_set, proc)  # the first was handled
        interrupt(proc)  # replies are still held: only the second signal can end it
        proc.wait(timeout=120)
        reader.join(timeout=120)
        hold.set()
    err = "".join(lines)
    assert proc.returncode == 130, err
    assert "interrupted again: exiting now" in err and "Traceback" not in err


def test_the_local_backend_generates_and_delivers_micro_batches():
    import asyncio

    import torch

    from dslrun.runtime.api.local import CPU_MICRO_BATCH, LocalChatBackend, micro_batch
    from dslrun.runtime.api.types import Reply

    class CpuModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

    assert micro_batch(CpuModel(), 16) == CPU_MICRO_BATCH == 4  # on a CPU: replies land every 4 samples
    backend = LocalChatBackend(None, None, max_batch=micro_batch(CpuModel(), 16))
    sizes: list[int] = []

    def generate(conversations, opts):
        sizes.append(len(conversations))
        return [Reply(text="ok") for _ in conversations]

    backend._generate = generate

    async def main():
        async def one(i):
            await backend.chat([{"role": "user", "content": str(i)}])

        await asyncio.gather(*(one(i) for i in range(12)))

    asyncio.run(main())
    assert sum(sizes) == 12 and max(sizes) <= 4  # each reply is delivered (and cached) when its batch ends



LEAVES_NOTHING = """
import os, signal, threading
from dslrun.runtime.execution.interrupt import sigint_handler

before = signal.getsignal(signal.SIGINT)
gate_r, gate_w = os.pipe()
with sigint_handler(write=lambda s: None):
    assert signal.getsignal(signal.SIGINT) is not before
    child = os.fork()
    if child == 0:  # holds a copy of the handler's pipe until released
        os.read(gate_r, 1)
        os._exit(0)
# the end of the run did not wait for the pipe to close: the child still holds it
assert signal.getsignal(signal.SIGINT) is before
assert signal.set_wakeup_fd(-1) == -1  # and the wakeup fd is what it was
assert not [t for t in threading.enumerate() if t.name == "dslrun-sigint"]
os.write(gate_w, b"x")
os.waitpid(child, 0)
print("clean")
"""


def test_the_handler_leaves_nothing_behind_even_with_a_forked_child_holding_its_pipe():
    # In a process of its own: a regression here is a run that never ends (bounded, not timed).
    done = subprocess.run([sys.executable, "-c", LEAVES_NOTHING], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["clean"], done.stderr
