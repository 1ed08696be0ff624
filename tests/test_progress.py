"""Progress when stderr is not a terminal: log lines on an injected clock, no sleeps."""

from __future__ import annotations

from dslrun.runtime.execution.progress import LogProgress, Progress, make_progress
from testkit.cli import REPO, alpaca, dslrun, write_pool

PLUGIN = {"DSLRUN_PLUGINS": "testkit.slow_ops", "PYTHONPATH": str(REPO / "tests")}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_running_step_every_interval():
    clock, lines = Clock(), []
    p = LogProgress(interval=30, clock=clock, write=lines.append, ticker=False)
    t = p.task("rated", total=200, cached=50)
    assert lines == ["rated: 200 to compute, 50 cached"]
    t.advance(40)
    t.advance(1, failed=1)
    clock.now += 10
    p.tick()
    assert len(lines) == 1  # not yet due
    clock.now += 20.5  # 30.5 s after the start: 41 done at 1.34/s, 159 left: 118 s
    p.tick()
    assert lines[1] == "rated: 41/200 (20%), 1.3/s, ETA 1m58s, 50 cached, 1 failed"
    clock.now += 5
    p.tick()
    assert len(lines) == 2  # the next line is due 30 s after the last
    t.done()
    assert lines[2].startswith("rated: finished 41/200 in 36s")
    clock.now += 60
    p.tick()
    assert len(lines) == 3  # a finished step says nothing more


def test_each_step_has_its_own_line():
    clock, lines = Clock(), []
    p = LogProgress(interval=5, clock=clock, write=lines.append, ticker=False)
    a = p.task("a", 10)
    p.task("b", 4, cached=6)
    a.advance(5)
    clock.now += 5
    p.tick()
    assert lines[2:] == ["a: 5/10 (50%), 1.0/s, ETA 5s, 0 cached", "b: 0/4 (0%), 0.0/s, ETA ?, 6 cached"]


def test_bars_on_a_terminal_lines_elsewhere():
    assert isinstance(make_progress(tty=True), Progress)
    p = make_progress(12, tty=False)
    assert isinstance(p, LogProgress) and p.interval == 12


def test_a_run_under_nohup_logs_each_step(tmp_path):
    # stderr is a pipe here, as under nohup or CI: no bar, but a line when the step starts and ends
    write_pool(tmp_path / "p.json", alpaca(40))
    (tmp_path / "s.sel").write_text('p = load(path: "p.json")\nscored = slow-score(p, delay: 0)\nsave(scored)\n')
    r = dslrun("s.sel", "--progress-interval", "0", "--out", "o", cwd=tmp_path, env=PLUGIN, check=True)
    assert "progress scored: 40 to compute, 0 cached" in r.stderr
    assert "progress scored: finished 40/40" in r.stderr
    again = dslrun("s.sel", "--out", "o", cwd=tmp_path, env=PLUGIN, check=True)
    assert "progress scored" not in again.stderr  # nothing to compute: no line
