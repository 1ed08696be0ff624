"""Selection-algorithm kernels: pure numpy functions, one module per algorithm.

These are the inner loops of the diversity-aware selection operators. They know
nothing about specs, caches or the runtime: arrays in, row indices out, so they
can be tested and benchmarked alone.

- ``deita``: DEITA score-first filtering with a cosine-similarity threshold.
- ``kcenter``: k-center greedy coreset (farthest-point traversal).
- ``coverage``: InsTag complexity-first diverse sampling over tag sets.
- ``facility``: lazy-greedy facility-location maximisation (Superfiltering.D).
"""

from .coverage import tag_coverage
from .deita import deita_filter, deita_filter_plain
from .facility import facility_location
from .kcenter import kcenter_greedy

__all__ = [
    "deita_filter",
    "deita_filter_plain",
    "facility_location",
    "kcenter_greedy",
    "tag_coverage",
]
