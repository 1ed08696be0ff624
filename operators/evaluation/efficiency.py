"""The unified comparison of selectors: PIR, SDF, and the distance to the efficiency baseline.

Liu et al. 2024, "Take the Essence and Discard the Dross: A Rethinking on Data Selection
for Fine-Tuning LLMs" (arXiv 2406.14115; code: tREeFrOGcoder/TEDD-Ranker) compare selectors
that were evaluated in different settings with two numbers:

* PIR, the performance-improvement ratio: the mean over evaluation settings of SEM / BM.
  For pairwise judging the SEM's number is its winning score and the BM's is 1 (the
  counterpart against itself), so PIR is the mean winning score.
* SDF, the selected-data fraction |subset| / |pool|.

On the efficiency graph (SDF on x, PIR on y) the baseline is the line through two
published methods, Instruction-Mining and InstructionGPT-4 (TEDD-Ranker ``index.html``:
``sortEfficiencyData``); a method's efficiency is its signed distance to that line.
TEDD-Ranker measures it in canvas pixels; we measure it in the graph's data units, which
does not depend on a plot's size, and give the vertical gap (PIR − baseline at the same
SDF) as well. Positive means above the line: more improvement for the data kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Point:
    method: str
    sdf: float
    pir: float
    source: str = ""


# PIR: the literature's table as given in the task (Liu et al. 2024). SDF: selected / pool
# of each paper's headline setting; where the paper's sizes are stated they are quoted, the
# value itself is the one Liu et al. tabulate (TEDD-Ranker index.html, efficiencyData).
PUBLISHED: tuple[Point, ...] = (
    Point("AlpaGasus", 0.17, 1.284, "Chen et al. 2024: 9k of Alpaca 52k (9,229 / 52,002 = 0.177; tabulated 0.17)"),
    Point("Superfiltering", 0.05, 1.475, "Li et al. 2024 (ACL): top 5% of Alpaca 52k by IFD (GPT-2 scorer)"),
    Point("InsTag", 0.0196, 1.344, "Lu et al. 2024: 6k of a 306k pool (6,000 / 306,044)"),
    Point("DEITA", 0.1, 1.467, "Liu et al. 2024 (DEITA): 6k/10k selected; SDF 0.1 as tabulated by TEDD-Ranker"),
    Point("InstructionGPT-4", 0.06, 1.443, "Wei et al. 2023: 200 of 3,439 MiniGPT-4 samples (0.058)"),
    Point("Nuggets", 0.15, 1.519, "Li et al. 2023 (One-shot learning as instruction data prospector): "
                                  "SDF 0.15 as tabulated by TEDD-Ranker"),
    Point("IFD", 0.05, 1.747, "Li et al. 2024 (NAACL, Cherry LLM): 5% of Alpaca 52k"),
    Point("LESS", 0.05, 1.570, "Xia et al. 2024: 5% of the 270k Flan v2/CoT/Dolly/OASST mixture"),
    Point("Instruction-Mining", 0.025, 1.400, "Cao et al. 2023: SDF 0.025 as tabulated by TEDD-Ranker"),
)
BASELINE = ("Instruction-Mining", "InstructionGPT-4")


def pir(sem: Sequence[float], bm: Sequence[float] | float = 1.0) -> float:
    """Mean of SEM / BM over evaluation settings; one BM value is broadcast (as TEDD-Ranker)."""
    bms = [float(bm)] * len(sem) if isinstance(bm, (int, float)) else [float(b) for b in bm]
    if len(bms) == 1 and len(sem) > 1:
        bms = bms * len(sem)
    if not sem or len(bms) != len(sem):
        raise ValueError("give one BM value, or one per SEM value")
    return sum(s / b for s, b in zip(sem, bms)) / len(sem)


def sdf(n_selected: int, n_pool: int) -> float:
    if n_pool <= 0:
        raise ValueError("the pool is empty")
    return n_selected / n_pool


def baseline_line(points: Sequence[Point] = PUBLISHED) -> tuple[float, float]:
    """(slope, intercept) of PIR = slope · SDF + intercept through the two baseline methods."""
    by = {p.method: p for p in points}
    a, b = by[BASELINE[0]], by[BASELINE[1]]
    slope = (b.pir - a.pir) / (b.sdf - a.sdf)
    return slope, a.pir - slope * a.sdf


def signed_distance(sdf_value: float, pir_value: float, line: tuple[float, float] | None = None) -> float:
    """Perpendicular distance to the baseline in (SDF, PIR) units; positive above the line."""
    slope, intercept = line or baseline_line()
    return (pir_value - (slope * sdf_value + intercept)) / math.sqrt(1 + slope * slope)


def vertical_gap(sdf_value: float, pir_value: float, line: tuple[float, float] | None = None) -> float:
    slope, intercept = line or baseline_line()
    return pir_value - (slope * sdf_value + intercept)


def efficiency(sdf_value: float, pir_value: float) -> dict[str, float]:
    return {"sdf": sdf_value, "pir": pir_value, "distance": signed_distance(sdf_value, pir_value),
            "gap": vertical_gap(sdf_value, pir_value)}


def plot(path: str | Path, ours: Sequence[Point] = (), points: Sequence[Point] = PUBLISHED) -> Path:
    """The efficiency graph as a PNG: published methods, the baseline line, and our points."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    slope, intercept = baseline_line(points)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    xs = [p.sdf for p in [*points, *ours]]
    x_max = max(0.2, *xs) * 1.08
    ax.plot([0, x_max], [intercept, intercept + slope * x_max], "--", color="grey", lw=1,
            label=f"baseline ({BASELINE[0]}–{BASELINE[1]})")
    ax.scatter([p.sdf for p in points], [p.pir for p in points], color="#4c72b0", zorder=3, label="published")
    for p in points:
        ax.annotate(p.method, (p.sdf, p.pir), textcoords="offset points", xytext=(4, 4), fontsize=7)
    for p in ours:
        ax.scatter([p.sdf], [p.pir], color="#dd5555", marker="*", s=160, zorder=4)
        ax.annotate(p.method, (p.sdf, p.pir), textcoords="offset points", xytext=(6, -10), fontsize=8,
                    color="#aa2222", weight="bold")
    ax.set_xlim(0, x_max)
    ax.set_xlabel("SDF (selected-data fraction)")
    ax.set_ylabel("PIR (performance-improvement ratio)")
    ax.set_title("Efficiency graph (Liu et al. 2024)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    from dslrun.runtime.data.pool_files import atomic_write

    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip(".") or "png"))  # stays in --out
    plt.close(fig)
    return path
