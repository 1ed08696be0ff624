"""Ctrl-C: the first lets replies in flight land in the cache and exits 130 with how to resume;
the second exits at once. Signals are sent on events (requests reaching the server), never on timers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from testkit.cli import write_pool
from testkit.openai_server import OpenAITestServer

SPEC = """pool = load(path: "pool.json")
rated = judge-score(pool, template: alpagasus, model: test-model, base_url: "{url}", api_key_env: K,
                    concurrency: 4, max_attempts: 1)
save(rated)
"""


def start(tmp_path, srv):
    write_pool(tmp_path / "pool.json", [{"instruction": f"Explain idea {i}.", "input": "", "output": f"Idea {i}."}
                                        for i in range(20)])
    (tmp_path / "s.sel").write_text(SPEC.format(url=srv.base_url))
    return subprocess.Popen([sys.executable, "-m", "dslrun.runtime.cli", "s.sel", "--out", "o", "-q"],
                            cwd=tmp_path, env={**os.environ, "K": "x"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


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


def test_first_ctrl_c_caches_what_is_in_flight_and_says_how_to_resume(tmp_path):
    hold = threading.Event()
    with OpenAITestServer(gate=hold) as srv:
        proc = start(tmp_path, srv)
        acknowledged, lines, reader = watch(proc, "interrupt: no new work is sent")
        until(lambda: srv.stats().total == 4, proc)  # 4 in flight (concurrency), held at the server
        proc.send_signal(signal.SIGINT)
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


def test_second_ctrl_c_exits_at_once_without_a_traceback(tmp_path):
    hold = threading.Event()
    with OpenAITestServer(gate=hold) as srv:
        proc = start(tmp_path, srv)
        until(lambda: srv.stats().total == 4, proc)
        proc.send_signal(signal.SIGINT)
        seen = []
        while not any("interrupt: no new work is sent" in line for line in seen):  # the first was handled
            line = proc.stderr.readline()
            assert line, "".join(seen)
            seen.append(line)
        proc.send_signal(signal.SIGINT)  # replies are still held: only the second signal can end it
        out, err = proc.communicate(timeout=120)
        hold.set()
        assert proc.returncode == 130
        assert "interrupted again: exiting now" in err and "Traceback" not in "".join(seen) + err


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
