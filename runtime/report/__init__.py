"""The run report: one self-contained HTML page per run (``report.html`` beside the outputs).

``collect`` turns a finished run into plain data (``report.json``); ``render`` turns that
data into HTML with inline SVG histograms and embedded images, so the page opens anywhere
without a server or network. ``dslrun report RUN_DIR`` re-renders it from ``report.json``.
"""

from dslrun.runtime.report.data import collect, load_profile, write_report
from dslrun.runtime.report.html import render, render_dir

__all__ = ["collect", "load_profile", "render", "render_dir", "write_report"]
