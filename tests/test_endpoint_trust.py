"""Before the first request to a server the user has not named, ``dslrun run`` shows it with the
plan's calls and cost and asks; without a terminal it refuses (exit 2), sending nothing.

Before: a spec's own ``base_url`` was called at once, with the user's key (rc 0, no question).
The test server listens on loopback, which is always allowed: the CLI tests load the plugin
``testkit.remote_endpoint`` (loopback counts as remote in that run), the API tests patch the
same function.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

import dslrun as api
from dslrun.dsl.compile import compile_spec
from dslrun.dsl.load import load_spec
from dslrun.runtime import endpoints
from dslrun.runtime.endpoints import (
    EndpointNotAllowed,
    allows,
    is_loopback,
    unknown_endpoints,
    user_urls,
)
from testkit.cli import write_pool
from testkit.openai_server import OpenAITestServer

pytest.importorskip("openai")

TESTS = Path(__file__).parent
KEY_ENV = "DSLRUN_ENDPOINT_TEST_KEY"
SPEC = """\
pool = load(path: "pool.json")
rated = judge-score(pool, template: alpagasus, model: test-model, {base_url}api_key_env: {key})
save(rated)
"""


def project(tmp_path: Path, base_url: str | None) -> Path:
    write_pool(tmp_path / "pool.json", [{"instruction": f"Task {i}", "input": "", "output": f"answer {i}"}
                                        for i in range(4)])
    named = f'base_url: "{base_url}", ' if base_url else ""
    (tmp_path / "spec.sel").write_text(SPEC.format(base_url=named, key=KEY_ENV))
    return tmp_path / "spec.sel"


# ----------------------------------------------------------------------------- the decision
@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost", "LOCALHOST.", "a.localhost",
                                  "::ffff:127.0.0.1"])
def test_loopback_addresses(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["10.0.0.1", "0.0.0.0", "example.com", "127.0.0.1.example.com", "localhost.evil.io",
                                  "api.openai.com", ""])
def test_other_hosts_are_not_loopback(host):
    assert not is_loopback(host)


@pytest.mark.parametrize("entry,url,ok", [
    ("https://judge.example.com/v1", "https://judge.example.com/v1", True),
    ("https://judge.example.com/v1/", "https://judge.example.com/v1", True),
    ("https://judge.example.com", "https://judge.example.com/v1", True),  # the paths below it
    ("https://judge.example.com:443/v1", "https://JUDGE.example.com/v1", True),  # default port, any case
    ("https://judge.example.com/v1", "https://judge.example.com/v10", False),  # not a prefix of a segment
    ("https://judge.example.com/v1", "http://judge.example.com/v1", False),  # another scheme
    ("https://judge.example.com/v1", "https://judge.example.com:8443/v1", False),
    ("https://judge.example.com/v1", "https://judge.example.com.evil.io/v1", False),
    ("judge.example.com", "https://judge.example.com/v1", True),  # a bare host: every path and port
    ("judge.example.com:8000", "http://judge.example.com:8000/v1", True),
    ("judge.example.com:8000", "http://judge.example.com:9000/v1", False),
])
def test_an_allowance_covers_its_url_and_the_paths_below(entry, url, ok):
    assert allows(entry, url) is ok


def test_urls_the_user_typed_are_found_in_any_value():
    assert sorted(user_urls(["http://a/v1", {"judge": {"base_url": "https://b/v1"}}, 3, "plain"])) == \
        ["http://a/v1", "https://b/v1"]


def unknown(tmp_path, base_url, allowed=()):
    plan = compile_spec(load_spec(project(tmp_path, base_url)), {}, cwd=tmp_path)
    return [e.url for e in unknown_endpoints(plan, allowed)]


def test_which_endpoints_are_unknown(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert unknown(tmp_path, "https://judge.example.com/v1/") == ["https://judge.example.com/v1"]
    assert unknown(tmp_path, "https://judge.example.com/v1", ["judge.example.com"]) == []
    assert unknown(tmp_path, "http://127.0.0.1:9/v1") == []
    assert unknown(tmp_path, None) == ["https://api.openai.com/v1"]  # the spec names none: OpenAI's, not named
    monkeypatch.setenv("OPENAI_BASE_URL", "https://proxy.example.org/v1")  # the user's environment names it
    assert unknown(tmp_path, None) == []
    assert unknown(tmp_path, "https://judge.example.com/v1") == ["https://judge.example.com/v1"]


# ----------------------------------------------------------------------------- the command line
@pytest.fixture
def server():
    with OpenAITestServer() as srv:
        yield srv


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dslrun.runtime.cli", "run", "spec.sel", "-q", "--out", "o",
            "--plugin", "testkit.remote_endpoint", *args]


def environment(**more: str) -> dict[str, str]:
    env = {**os.environ, KEY_ENV: "sk-test", "PYTHONPATH": str(TESTS), **more}
    env.pop("OPENAI_BASE_URL", None)
    env.pop("DSLRUN_CONFIG", None)
    return env


def run_without_terminal(tmp_path, *args):
    return subprocess.run(command(*args), cwd=tmp_path, env=environment(), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)


def test_without_a_terminal_an_unknown_endpoint_is_refused_before_anything_is_sent(tmp_path, server):
    project(tmp_path, server.base_url)
    proc = run_without_terminal(tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert server.total == 0
    assert not (tmp_path / "o").exists()  # nothing written either
    err = proc.stderr
    assert "Traceback" not in err
    assert server.base_url in err
    assert "rated (judge-score, model test-model, key in $" + KEY_ENV + "): 4 API calls (0/4 samples cached)" in err
    assert "no money cost known" in err  # the planner's word: no price for this server
    assert "--yes" in err and "allow_endpoints" in err and "no terminal" in err


@pytest.mark.parametrize("how", ["--yes", "--allow-endpoint", "--set", "dslrun.yaml"])
def test_each_way_of_naming_the_endpoint_lets_the_run_go(tmp_path, server, how):
    project(tmp_path, server.base_url)
    args: list[str] = []
    if how == "--yes":
        args = ["--yes"]
    elif how == "--allow-endpoint":
        args = ["--allow-endpoint", server.base_url]
    elif how == "--set":
        args = ["--set", f"rated.base_url={server.base_url}"]
    else:
        (tmp_path / "dslrun.yaml").write_text(f"allow_endpoints: [\"{server.base_url}\"]\n")
    proc = run_without_terminal(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    assert server.total == 4
    assert ("(allowed by --yes)" in proc.stderr) is (how == "--yes")


def ask_on_a_terminal(tmp_path: Path, server: OpenAITestServer, answer: bytes) -> tuple[int, str, int]:
    """Run with stdin on a pseudo-terminal; answer once the question is shown. Returns the exit
    code, stderr, and the requests the server had when the question was shown."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(command(), cwd=tmp_path, env=environment(), stdin=slave, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    os.close(slave)
    assert proc.stderr is not None
    err = b""
    try:
        while b"[y/N]" not in err:
            ready, _, _ = select.select([proc.stderr], [], [], 120)
            chunk = os.read(proc.stderr.fileno(), 4096) if ready else b""
            if not chunk:
                raise AssertionError(f"no question asked: {err.decode()}")
            err += chunk
        sent_before_answer = server.total
        os.write(master, answer)
        _, rest = proc.communicate(timeout=300)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, (err + rest).decode(), sent_before_answer


def test_on_a_terminal_the_run_asks_and_sends_nothing_before_the_answer(tmp_path, server):
    project(tmp_path, server.base_url)
    rc, err, before = ask_on_a_terminal(tmp_path, server, b"n\n")
    assert (rc, before, server.total) == (2, 0, 0), err
    assert "4 API calls" in err and "not confirmed: nothing was sent" in err
    rc, err, before = ask_on_a_terminal(tmp_path, server, b"y\n")
    assert (rc, before, server.total) == (0, 0, 4), err


# ----------------------------------------------------------------------------- the Python API
def test_the_python_api_refuses_without_asking_unless_allowed(tmp_path, server, monkeypatch):
    monkeypatch.setattr(endpoints, "is_loopback", lambda host: False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv(KEY_ENV, "sk-test")
    monkeypatch.chdir(tmp_path)
    spec = project(tmp_path, server.base_url)
    with pytest.raises(EndpointNotAllowed, match="4 API calls") as e:
        api.run(spec, out=tmp_path / "o", cache_dir=tmp_path / "c")
    assert "yes=True" in str(e.value) and server.total == 0
    api.run(spec, out=tmp_path / "o", cache_dir=tmp_path / "c", settings={"allow_endpoints": [server.base_url]})
    assert server.total == 4
    api.run(spec, out=tmp_path / "o2", cache_dir=tmp_path / "c2", yes=True)
    assert server.total == 8 and json.loads((tmp_path / "o2" / "dslrun.lock.json").read_text())



def test_plan_names_each_server_and_whether_run_will_ask(tmp_path):
    """Before: `dslrun plan` listed calls and cost but not where they go, nor that `run` would ask."""
    project(tmp_path, "https://judge.example.com/v1")
    base = [sys.executable, "-m", "dslrun.runtime.cli", "plan", "spec.sel"]
    out = subprocess.run(base, cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "endpoints:\n  https://judge.example.com/v1  not named by you: `dslrun run` asks before sending" in out.stdout
    assert "steps: rated" in out.stdout
    named = subprocess.run([*base, "--allow-endpoint", "judge.example.com"], cwd=tmp_path, env=environment(),
                           capture_output=True, text=True, timeout=300)
    assert "https://judge.example.com/v1  allowed; steps: rated" in named.stdout
    project(tmp_path, "http://127.0.0.1:9/v1")
    local = subprocess.run(base, cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=300)
    assert "http://127.0.0.1:9/v1  loopback; steps: rated" in local.stdout
