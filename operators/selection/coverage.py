"""InsTag complexity-first diverse sampling over per-sample tag sets.

Source read: Lu et al., "#InsTag: Instruction Tagging for Analyzing Supervised
Fine-tuning of Large Language Models" (arXiv 2308.07074), Algorithm 1,
"Complexity-first Diverse Sampling". The authors' repository (OFA-Sys/InsTag)
publishes the tagger but no sampling code, so this follows the paper, checked
against a public re-implementation of Algorithm 1.

Semantics:

1. Complexity first: order samples by their number of distinct tags, most
   first; equal counts keep their original order (stable sort).
2. Diversity: walk that order in passes. Each pass starts with an empty set of
   covered tags; a sample not yet taken is taken when it adds at least one tag
   the pass has not covered yet, and its tags join the covered set.
3. Stop as soon as ``k`` samples are taken. Return their indices in the order
   taken.

A pass that takes nothing can only happen when every sample left has no tags
(with an empty covered set, any tag is new). The paper's loop does not say what
happens then (as written it would not end). Here the sampler stops, returning
fewer than ``k`` indices, because an untagged sample carries no complexity or
diversity signal; ``fill_untagged=True`` instead appends the remaining
(untagged) samples in their original order until ``k`` is reached, as the
public re-implementation does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["tag_coverage"]


def tag_coverage(
    tags: Sequence[Iterable[str]], k: int, *, fill_untagged: bool = False
) -> list[int]:
    """Complexity-first diverse sampling; returns up to ``k`` indices in order taken."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    sets = [frozenset(t) for t in tags]
    # sorted() is stable, so equal tag counts keep their original order.
    remaining = sorted(range(len(sets)), key=lambda i: -len(sets[i]))
    taken: list[int] = []
    while remaining and len(taken) < k:
        covered: set[str] = set()
        left: list[int] = []
        for i in remaining:
            if not covered.issuperset(sets[i]):
                covered |= sets[i]
                taken.append(i)
                if len(taken) == k:
                    return taken
            else:
                left.append(i)
        if len(left) == len(remaining):  # nothing taken: only untagged rows remain
            break
        remaining = left
    if fill_untagged:
        taken.extend(remaining[: k - len(taken)])
    return taken
