"""A real two-node Ray cluster on 127.0.0.1, started and stopped by a test.

Each node is a ``ray start --block`` process in its own session, so everything it
starts (GCS, raylet, agents, workers) shares that session id; stopping signals exactly
those processes by pid (SIGTERM, then SIGKILL), never Ray processes of anyone else. Token auth is off and every address is
127.0.0.1, so the cluster works offline and its traffic stays on loopback.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", DSLRUN_RAY_NODE_IP="127.0.0.1",
               PYTHONPATH=os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH", "")) if p))
    return env


class LocalRayCluster:
    def __init__(self, cpus: tuple[int, ...] = (2, 2), env: dict[str, str] | None = None):
        self.cpus = cpus
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # unix sockets: keep paths short
        self.procs: list[subprocess.Popen] = []
        self.env = {**ray_env(), **(env or {})}  # workers inherit their node's environment

    def _start(self, args: list[str], n: int) -> None:
        ports = ["--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port",
                 str(free_port()), "--metrics-export-port", str(free_port()),
                 "--runtime-env-agent-port", str(free_port())]
        log = open(self.tmp / f"node{n}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([str(BIN / "ray"), "start", "--block", "--node-ip-address", "127.0.0.1",
                                 "--num-cpus", str(self.cpus[n]), "--num-gpus", "0", "--temp-dir",
                                 str(self.tmp / f"n{n}"), "--disable-usage-stats", *ports, *args],
                                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)

    def start(self, timeout: float = 90) -> LocalRayCluster:
        self._start(["--head", "--port", str(self.port), "--include-dashboard", "false",
                     "--dashboard-port", str(free_port())], 0)
        self.wait_started(0, timeout)
        for n in range(1, len(self.cpus)):
            self._start(["--address", self.address], n)
        for n in range(1, len(self.cpus)):
            self.wait_started(n, timeout)
        self.wait_nodes(len(self.cpus), timeout)
        return self

    def wait_started(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[n].poll() is not None:
                raise RuntimeError(f"ray start exited with {self.procs[n].returncode}: {self.logs()}")
            if "Ray runtime started" in (self.tmp / f"node{n}.log").read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise TimeoutError(f"node {n} did not start in {timeout}s: {self.logs()}")

    def nodes(self) -> int:
        code = (f"import ray, json; ray.init(address={self.address!r}, logging_level='ERROR'); "
                "print(json.dumps(sum(1 for n in ray.nodes() if n['Alive'])))")
        proc = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True,
                              timeout=60)
        return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else 0

    def wait_nodes(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"ray start exited with {p.returncode}: {self.logs()}")
            if self.nodes() >= n:
                return
            time.sleep(1)
        raise TimeoutError(f"the cluster did not reach {n} nodes in {timeout}s: {self.logs()}")

    def logs(self) -> str:
        return "\n".join(p.read_text()[-2000:] for p in sorted(self.tmp.glob("node*.log")))

    def stop(self) -> None:
        """What ``ray stop`` does, limited to the processes of this cluster: SIGTERM, then
        SIGKILL whatever is still alive after a grace period."""
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            for pid in self.leftovers():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while self.leftovers() and time.monotonic() < deadline:
                time.sleep(0.2)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(1)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def leftovers(self) -> list[int]:
        """Live processes in the sessions of our ``ray start`` commands (all they started)."""
        sessions = {p.pid for p in self.procs}
        out = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp session ...
            if int(fields[3]) in sessions and fields[0] != "Z":
                out.append(int(d.name))
        return out

    def __enter__(self) -> LocalRayCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
