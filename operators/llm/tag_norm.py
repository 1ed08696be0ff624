"""InsTag's tag normalisation, as an ordered sequence of steps over the whole pool's tag lists.

Each step maps ``list[list[str]]`` (one list per sample) to the same shape; a sample's
tags stay deduplicated in first-seen order. Steps:

* ``lower``: lowercase, every character that is not a letter or digit becomes a space.
* ``stem``: each word reduced by the Snowball English stemmer ("debugging" → "debug").
* ``frequency``: drop tags seen in fewer than ``alpha`` samples (InsTag's α).
* ``semantic``: embed the distinct tags, merge tags whose cosine distance to a more
  frequent tag is below ``merge_distance`` into it (greedy, most frequent first).
* ``association``: for tag pairs that co-occur in at least ``min_count`` samples, merge the
  rarer into the more frequent when co-occurrences / count(rarer) ≥ ``threshold``. A
  simplification of InsTag's association-rule merge (it mines rules with FP-growth).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from itertools import combinations

import numpy as np

Tags = list[list[str]]
STEPS = ("lower", "stem", "frequency", "semantic", "association")


def _dedup(tags: Iterable[str]) -> list[str]:
    return [t for t in dict.fromkeys(tags) if t]


def lower(pool: Tags) -> Tags:
    return [_dedup(" ".join(re.sub(r"[^0-9a-z]+", " ", t.lower()).split()) for t in tags) for tags in pool]


def stem(pool: Tags) -> Tags:
    import snowballstemmer

    stemmer = snowballstemmer.stemmer("english")
    return [_dedup(" ".join(stemmer.stemWords(t.split())) for t in tags) for tags in pool]


def counts(pool: Tags) -> Counter:
    return Counter(t for tags in pool for t in set(tags))


def frequency(pool: Tags, alpha: int) -> Tags:
    seen = counts(pool)
    return [[t for t in tags if seen[t] >= alpha] for tags in pool]


def _apply(pool: Tags, mapping: dict[str, str]) -> Tags:
    return [_dedup(mapping.get(t, t) for t in tags) for tags in pool]


def semantic(pool: Tags, embed: Callable[[list[str]], np.ndarray], merge_distance: float) -> Tags:
    seen = counts(pool)
    names = sorted(seen, key=lambda t: (-seen[t], t))  # most frequent first, ties by name
    if len(names) < 2:
        return pool
    vecs = np.asarray(embed(names), dtype=np.float64)
    vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    mapping: dict[str, str] = {}
    heads: list[int] = []
    for i in range(len(names)):
        if heads:
            dist = 1.0 - vecs[heads] @ vecs[i]
            j = int(np.argmin(dist))
            if dist[j] < merge_distance:
                mapping[names[i]] = names[heads[j]]
                continue
        heads.append(i)
    return _apply(pool, mapping)


def association(pool: Tags, min_count: int, threshold: float) -> Tags:
    seen = counts(pool)
    pairs: Counter = Counter()
    for tags in pool:
        pairs.update(combinations(sorted(set(tags)), 2))
    mapping: dict[str, str] = {}
    for (a, b), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0])):
        if n < min_count:
            continue
        keep, rare = (a, b) if seen[a] >= seen[b] else (b, a)  # ties: the first by name stays
        if rare in mapping or n / seen[rare] < threshold:
            continue
        mapping[rare] = mapping.get(keep, keep)
    return _apply(pool, mapping)
