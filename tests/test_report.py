"""The run report: sections and numbers in the HTML, re-rendering, and a real headless browser."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from testkit.cli import SPECS, dslrun

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


def evaluation_fixture(run_dir: Path) -> dict:
    """An evaluate result as the operator writes it, with a real efficiency graph."""
    eff = pytest.importorskip("dslrun.operators.evaluation.efficiency")
    pytest.importorskip("matplotlib")
    point = eff.efficiency(0.1, 1.2)
    eff.plot(run_dir / "ev" / "efficiency.png", [eff.Point("ours", 0.1, 1.2)])
    tally = {"win": 3, "tie": 1, "loss": 1, "n": 5, "winning_score": 1.4}
    return {"node": "ev", "pfm": "tiny", "selected": 10, "pool": 100, "sdf": 0.1,
            "counterparts": {"random": {"per_set": {"lima": tally}, "total": tally, "pir": 1.4, "unparsed_reviews": 0}},
            "models": {"sem": {"samples": 10, "train": {"epoch_losses": [2.0, 1.5], "cached": False},
                               "heldout": {"loss": 1.7, "ppl": 5.47}}},
            "efficiency": {"against": "random", **point, "graph": "ev/efficiency.png"}}


@pytest.fixture()
def run_dir(tmp_path):
    dslrun("run", str(SPECS / "longest.sel"), "--set", "k=30", "--set", "limit=100", "-q", "--out", "out",
           cwd=tmp_path, check=True)
    return tmp_path / "out"


def test_report_has_counts_histograms_examples_and_profile_hook(run_dir):
    html = (run_dir / "report.html").read_text()
    for section in ('id="counts"', 'id="scores"', 'id="profile"'):
        assert section in html
    assert "<td class=l>longest</td><td class=l>rank</td><td>100</td><td>30</td><td>70</td>" in html
    assert html.count("<svg") == 8  # the length step's 8 count columns
    assert "kept</h3>" in html and "dropped</h3>" in html and "output_chars=" in html
    # every run writes its feasibility profile (dslrun explain): longest is length | rank
    assert json.loads((run_dir / "profile.json").read_text())["steps"] == 2
    assert "<td class=l>llm_uses</td><td class=l>0</td>" in html and 'id="evaluation"' not in html
    data = json.loads((run_dir / "report.json").read_text())
    longest = next(n for n in data["nodes"] if n["name"] == "longest")
    assert len(longest["kept_examples"]) == 3 and len(longest["dropped_examples"]) == 3
    kept_min = min(e["output_chars"] for e in longest["kept_examples"])
    assert all(e["output_chars"] <= kept_min for e in longest["dropped_examples"])  # rank kept the longest
    # The dropped examples are the lineage's (pool.scores.parquet): its first rows dropped here, its reasons.
    import pyarrow.parquet as pq

    lineage = [r for r in pq.read_table(run_dir / "pool.scores.parquet").to_pylist() if r["dropped_by"] == "longest"]
    assert [(e["output_chars"], e["why"]) for e in longest["dropped_examples"]] == \
        [(r["output_chars"], r["drop_reason"]) for r in lineage[:3]]
    assert f"why: {lineage[0]['drop_reason']}" in html
    hist = next(n for n in data["nodes"] if n["name"] == "lengths")["histograms"]["output_chars"]
    assert sum(hist["counts"]) == hist["n"] == 100
    # A feasibility profile (from `dslrun explain`) and an evaluation appear on re-rendering.
    (run_dir / "profile.json").write_text(json.dumps({"trained_llms": 1, "steps": 2, "chatgpt_free": True}))
    data["evaluations"] = [evaluation_fixture(run_dir)]
    (run_dir / "report.json").write_text(json.dumps(data))
    proc = dslrun("report", str(run_dir), cwd=run_dir.parent, check=True)
    assert "report.html" in proc.stdout
    html = (run_dir / "report.html").read_text()
    assert "<td class=l>trained_llms</td><td class=l>1</td>" in html
    assert 'id="evaluation"' in html and "winning score" in html and "data:image/png;base64," in html
    assert "<td>3</td><td>1</td><td>1</td><td>1.400</td>" in html


def test_report_command_on_a_folder_without_a_run(tmp_path):
    proc = dslrun("report", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 1 and "report.json" in proc.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    data = json.loads((run_dir / "report.json").read_text())
    data["evaluations"] = [evaluation_fixture(run_dir)]
    (run_dir / "report.json").write_text(json.dumps(data))
    dslrun("report", str(run_dir), cwd=tmp_path, check=True)
    page_url = (run_dir / "report.html").resolve().as_uri()
    shot = tmp_path / "report.png"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # plain chromium: a screenshot and the DOM it built
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                        "--window-size=1200,2400", page_url], check=True, capture_output=True, timeout=120)
        assert shot.stat().st_size > 10_000
        return
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
        page.goto(page_url)
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
        svgs = page.eval_on_selector_all("svg rect", "els => els.filter(e => e.getBBox().height > 0).length")
        sections = page.eval_on_selector_all("section h2", "els => els.map(e => e.textContent)")
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert errors == []
    assert images and all(done and width > 300 for done, width in images)  # the efficiency graph decoded
    assert svgs > 20
    assert sections == ["Steps: rows in, kept, dropped, failed", "Scores and filters", "Feasibility profile",
                        "Evaluation"]
    assert shot.stat().st_size > 20_000


def test_outliers_get_log_scaled_bins_and_the_chart_a_counts_axis():
    import numpy as np

    from dslrun.runtime.report.data import histogram
    from dslrun.runtime.report.html import render, svg_histogram

    ppl = np.array([3.0 + i % 7 for i in range(98)] + [4000.0, 90000.0])  # perplexities with two outliers
    h = histogram(ppl)
    assert h["scale"] == "log" and sum(h["counts"]) == 100
    assert max(h["counts"]) < 98  # the bulk is spread over several bars, not one
    assert histogram(np.arange(1.0, 50.0))["scale"] == "linear"
    svg = svg_histogram("ppl", h)
    assert "log scale" in svg and f'font-size="10">{max(h["counts"])}</text>' in svg  # the tallest bar's count
    html = render({"doc": "line one\nusage: dslrun x.sel", "nodes": []}, Path("."))
    assert '<p class="doc">line one\nusage: dslrun x.sel</p>' in html and ".doc{white-space:pre-line}" in html


def test_failure_reasons_api_notes_and_tag_frequencies_are_shown(tmp_path):
    from dslrun.runtime.data.table import Table, as_column
    from dslrun.runtime.report.data import _failures_and_tags
    from dslrun.runtime.report.html import _node_details

    t = Table({"id": as_column(["a", "b", "c"], "str"), "score": as_column([None, 4.0, None], "float"),
               "score_reason": as_column(["unparsable reply: x", None, "timeout"], "str"),
               "tags": as_column([["math", "code"], ["math"], None], "list")})
    extra = _failures_and_tags(t, {"id"})
    assert extra["failure_reasons"] == {"unparsable reply": 1, "timeout": 1}
    assert extra["tag_counts"] == {"math": 2, "code": 1} and extra["distinct_tags"] == 2
    html = _node_details([{"name": "rated", "op": "judge-score", "histograms": {}, **extra,
                           "notes": ["api: 3 requests: 1 ok; 3 calls, 2 retries; 90+9 tokens, cost 0.0001"]}])
    assert "2 retries" in html and "unparsable reply" in html and "math (2), code (1)" in html
