"""``report.html``: the run on one self-contained page (inline CSS and SVG, images as data URIs)."""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path
from typing import Any

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin-bottom:.3em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right;vertical-align:top}
th{background:#f4f4f4}td.l,th.l{text-align:left}.muted{color:#777}.hists{display:flex;flex-wrap:wrap;gap:1em}
.hist{border:1px solid #eee;padding:.4em}.ex{display:grid;grid-template-columns:1fr 1fr;gap:1em}
.ex div{min-width:0}.sample{border-left:3px solid #8c8;padding:.2em .6em;margin:.4em 0;background:#fafafa;white-space:pre-wrap;word-break:break-word}
.drop .sample{border-color:#d88}.why{color:#a44}.pending{border:1px dashed #bbb;padding:.6em;color:#666}
code{background:#f4f4f4;padding:0 .2em}.doc{white-space:pre-line}
.warn{border:1px solid #e0b000;background:#fff8dc;padding:0 1em;margin-top:1em}.warn h2{border:0;margin-top:.5em}
"""


def _num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return escape(str(v))


def svg_histogram(name: str, h: dict[str, Any], width: int = 260, height: int = 110) -> str:
    counts, edges = h["counts"], h["edges"]
    top = max(counts) or 1
    bar_w = (width - 10) / len(counts)
    bars = []
    for i, c in enumerate(counts):
        bh = (height - 30) * c / top
        x, y = 5 + i * bar_w, height - 20 - bh
        tip = f"{edges[i]:.4g} – {edges[i + 1]:.4g}: {c}" if len(edges) > i + 1 else str(c)
        bars.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar_w - 1, 1):.1f}" height="{bh:.1f}" '
                    f'fill="#5b8bd0"><title>{escape(tip)}</title></rect>')
    axis = (f'<text x="5" y="{height - 5}" font-size="10">{h["min"]:.4g}</text>'
            f'<text x="{width - 5}" y="{height - 5}" font-size="10" text-anchor="end">{h["max"]:.4g}</text>'
            f'<text x="5" y="10" font-size="10">{top}</text>'  # the count of the tallest bar: a counts axis
            f'<line x1="4" y1="{height - 20}" x2="4" y2="10" stroke="#999" stroke-width="0.5"/>')
    scale = ", log scale" if h.get("scale") == "log" else ""
    return (f'<div class="hist"><b>{escape(name)}</b> <span class="muted">n={h["n"]}'
            f'{", mean " + format(h["mean"], ".4g") if "mean" in h else ""}{scale}</span><br>'
            f'<svg role="img" aria-label="histogram of {escape(name)}" width="{width}" height="{height}" '
            f'xmlns="http://www.w3.org/2000/svg">{"".join(bars)}{axis}</svg></div>')


def _examples(title: str, rows: list[dict[str, Any]], cls: str) -> str:
    items = []
    for r in rows:
        scores = ", ".join(f"{k}={_num(v)}" for k, v in r.items() if k not in ("instruction", "input", "output", "why"))
        text = f"Instruction: {r.get('instruction', '')}"
        if r.get("input"):
            text += f"\nInput: {r['input']}"
        text += f"\nResponse: {r.get('output', '')}"
        why = f'<br><span class="why">why: {escape(r["why"])}</span>' if r.get("why") else ""
        items.append(f'<div class="sample">{escape(text)}<br><span class="muted">{escape(scores)}</span>{why}</div>')
    return f'<div class="{cls}"><h3>{title}</h3>{"".join(items) or "<p class=muted>none</p>"}</div>'


def _counts(nodes: list[dict[str, Any]]) -> str:
    head = "<tr><th class=l>step</th><th class=l>op</th><th>in</th><th>kept</th><th>dropped</th><th>failed</th><th>seconds</th></tr>"
    body = "".join(f"<tr><td class=l>{escape(n['name'])}</td><td class=l>{escape(n['op'])}</td>"
                   f"<td>{_num(n['rows_in'])}</td><td>{_num(n['kept'])}</td><td>{_num(n['dropped'])}</td>"
                   f"<td>{_num(n['failed'])}</td><td>{_num(n['seconds'], 2)}</td></tr>" for n in nodes)
    return f'<section id="counts"><h2>Steps: rows in, kept, dropped, failed</h2><table>{head}{body}</table></section>'


def _banner(nodes: list[dict[str, Any]]) -> str:
    """Warnings first: a step that kept nothing must not look like a success."""
    items = [f"<li><b>{escape(n['name'])}</b>: {escape(w)}</li>" for n in nodes for w in n.get("warnings") or []]
    if not items:
        return ""
    return f'<section id="warnings" class="warn"><h2>Warnings</h2><ul>{"".join(items)}</ul></section>'


def _notes(n: dict[str, Any]) -> str:
    """A step's own account: API calls, tokens, retries and cost (its run notes), why scores
    failed, and the most frequent tags."""
    parts = [f"<p class=muted>{escape(note)}</p>" for note in n.get("notes") or []]
    if n.get("failure_reasons"):
        items = "".join(f"<tr><td class=l>{escape(k)}</td><td>{v}</td></tr>" for k, v in n["failure_reasons"].items())
        parts.append(f"<table><tr><th class=l>failed: reason</th><th>samples</th></tr>{items}</table>")
    if n.get("tag_counts"):
        items = ", ".join(f"{escape(t)} ({c})" for t, c in n["tag_counts"].items())
        parts.append(f"<p><b>tags</b> ({n.get('distinct_tags')} distinct; most frequent first): {items}</p>")
    return "".join(parts)


def _node_details(nodes: list[dict[str, Any]]) -> str:
    parts = []
    for n in nodes:
        hists = n.get("histograms") or {}
        extra = _notes(n)
        if not hists and "kept_examples" not in n and not extra:
            continue
        block = f'<h3 id="node-{escape(n["name"])}">{escape(n["name"])} <span class="muted">({escape(n["op"])})</span></h3>'
        block += extra
        if hists:
            block += '<div class="hists">' + "".join(svg_histogram(k, h) for k, h in hists.items()) + "</div>"
        if "kept_examples" in n:
            block += ('<div class="ex">' + _examples("kept", n["kept_examples"], "keep")
                      + _examples("dropped", n.get("dropped_examples", []), "drop") + "</div>")
        parts.append(block)
    body = "".join(parts) or "<p class=muted>no step computed scores or dropped rows</p>"
    return f'<section id="scores"><h2>Scores and filters</h2>{body}</section>'


def _profile(profile: dict[str, Any] | None) -> str:
    # Hook for `dslrun explain` (built elsewhere): any dict of profile fields is shown as is.
    if not profile:
        return ('<section id="profile"><h2>Feasibility profile</h2><p class="pending">No profile for this run. '
                "When <code>dslrun explain</code> writes <code>profile.json</code> into the run folder (or a "
                "caller passes <code>profile=</code> to <code>write_report</code>), its fields appear here."
                "</p></section>")
    rows = "".join(f"<tr><td class=l>{escape(str(k))}</td><td class=l>{escape(_plain(v))}</td></tr>"
                   for k, v in profile.items())
    return f'<section id="profile"><h2>Feasibility profile</h2><table>{rows}</table></section>'


def _plain(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, default=str)


def _image(path: str | None, out_dir: Path, alt: str) -> str:
    if not path:
        return ""
    p = Path(path)
    p = p if p.is_absolute() else out_dir / p
    if not p.is_file():
        return f'<p class="muted">({escape(alt)}: {escape(str(path))} not found)</p>'
    data = base64.b64encode(p.read_bytes()).decode()
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}" style="max-width:100%">'


def _evaluation(ev: dict[str, Any], out_dir: Path) -> str:
    head = (f"<h3>{escape(str(ev.get('node', 'evaluate')))}: SEM on {ev.get('selected')} samples"
            f"{' of ' + str(ev['pool']) if 'pool' in ev else ''} (PFM {escape(str(ev.get('pfm')))})</h3>")
    rows = []
    for name, d in ev.get("counterparts", {}).items():
        for setting, t in [*d["per_set"].items(), ("total", d["total"])]:
            rows.append(f"<tr><td class=l>{escape(name)}</td><td class=l>{escape(setting)}</td><td>{t['win']}</td>"
                        f"<td>{t['tie']}</td><td>{t['loss']}</td><td>{_num(t['winning_score'])}</td></tr>")
        rows.append(f"<tr><td class=l>{escape(name)}</td><td class=l><b>PIR</b></td><td colspan=4>"
                    f"{_num(d.get('pir'))} ({d.get('unparsed_reviews', 0)} unparsable reviews)</td></tr>")
        if d.get("benchmark_ratio"):
            per = ", ".join(f"{k} {v:.3f}" for k, v in d["benchmark_ratio"]["per_metric"].items())
            rows.append(f"<tr><td class=l>{escape(name)}</td><td class=l>benchmarks SEM/{escape(name)}</td>"
                        f"<td colspan=4>{_num(d['benchmark_ratio']['mean'])} ({escape(per)})</td></tr>")
    table = ("<table><tr><th class=l>counterpart</th><th class=l>eval set</th><th>win</th><th>tie</th>"
             "<th>loss</th><th>winning score</th></tr>" + "".join(rows) + "</table>")
    models = ev.get("models") or {}
    mrows = "".join(
        f"<tr><td class=l>{escape(k)}</td><td>{_num(m.get('samples'))}</td>"
        f"<td>{_num((m.get('train') or {}).get('epoch_losses', [None])[-1] if m.get('train') else None)}</td>"
        f"<td>{_num((m.get('heldout') or {}).get('loss'))}</td><td>{_num((m.get('heldout') or {}).get('ppl'), 2)}</td>"
        f"<td class=l>{'reused' if (m.get('train') or {}).get('cached') else 'trained' if m.get('train') else '–'}</td></tr>"
        for k, m in models.items())
    mtable = ("<table><tr><th class=l>model</th><th>train samples</th><th>last epoch loss</th>"
              "<th>held-out loss</th><th>held-out ppl</th><th class=l>training</th></tr>" + mrows + "</table>"
              if models else "")
    e = ev.get("efficiency")
    effp = ""
    if e:
        effp = (f"<p>SDF <b>{_num(e['sdf'], 4)}</b>, PIR <b>{_num(e['pir'])}</b> (vs {escape(e['against'])}); "
                f"signed distance to the efficiency baseline <b>{_num(e['distance'], 4)}</b> "
                f"(vertical gap {_num(e['gap'], 4)}; positive = above the line).</p>"
                + _image(e.get("graph"), out_dir, "efficiency graph"))
    return head + table + mtable + effp


def render(data: dict[str, Any], out_dir: Path) -> str:
    evals = "".join(_evaluation(ev, out_dir) for ev in data.get("evaluations") or [])
    eval_section = f'<section id="evaluation"><h2>Evaluation</h2>{evals}</section>' if evals else ""
    title = f"dslrun report: {Path(data.get('spec') or 'run').name}"
    # The spec's header comment keeps its lines (usage lines, citations), not one run-on paragraph.
    doc = f'<p class="doc">{escape(data["doc"])}</p>' if data.get("doc") else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<link rel="icon" href="data:,"><style>{CSS}</style></head><body><h1>{escape(title)}</h1>{doc}'
            f'<p class="muted">output: {escape(str(data.get("out_dir", "")))} · {data.get("seconds", 0)} s</p>'
            f"{_banner(data.get('nodes', []))}{_counts(data.get('nodes', []))}{_node_details(data.get('nodes', []))}{_profile(data.get('profile'))}"
            f"{eval_section}</body></html>\n")


def render_dir(run_dir: Path) -> Path:
    """Re-render ``report.html`` from ``report.json`` (``dslrun report RUN_DIR``)."""
    from dslrun.runtime.data.pool_files import atomic_write
    from dslrun.runtime.report.data import load_profile

    src = run_dir / "report.json"
    if not src.is_file():
        raise FileNotFoundError(f"{src} not found: is {run_dir} the output folder of a dslrun run?")
    data = json.loads(src.read_text(encoding="utf-8"))
    data["profile"] = load_profile(run_dir) or data.get("profile")
    html = render(data, run_dir)
    path = run_dir / "report.html"
    atomic_write(path, lambda tmp: tmp.write_text(html, encoding="utf-8"))
    return path
