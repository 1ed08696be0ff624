"""An address-space cap (RLIMIT_AS) a fixed headroom above what the process has mapped now.

Used by the spec fuzz so that an example which allocates without a bound fails with a
MemoryError at once, on every run, instead of slowing the machine down. Standard library only,
so a fresh interpreter can import it to check the cap with nothing else in the process.

The cap is fixed at entry: whatever the rest of the process releases while it is on (another
thread's buffers, a garbage cycle collected mid-example) adds to the headroom. That keeps it a
bound on growth by gigabytes, which is what it is for, but not an exact measure.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

STATM = Path("/proc/self/statm")


def supported() -> bool:
    """Linux only: elsewhere the fuzz still has its stack and IR bounds."""
    return sys.platform.startswith("linux") and STATM.exists()


def mapped_bytes() -> int:
    # The first field is total_vm in pages: the figure the kernel holds against RLIMIT_AS.
    return int(STATM.read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def memory_cap(headroom: int) -> Iterator[None]:
    if not supported():
        yield
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = mapped_bytes() + headroom
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
