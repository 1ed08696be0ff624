"""Judge SEM vs counterpart answers in both orders through the API pool, every review cached.

A request's cache key is the hash of its messages plus the judge's identity, so a re-run
(or another evaluation that produces the same answers) pays for no review twice, and an
unparsable review keeps its raw text and scores [-1, -1] as the original does.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dslrun.operators.evaluation.judge import (
    UNPARSED,
    PairwiseResult,
    ReviewParseError,
    aggregate,
    parse_review,
    review_messages,
)

JUDGE_OP, JUDGE_VERSION = "evaluate-judge", "1"


@dataclass(frozen=True)
class Pair:
    setting: str  # evaluation set name (vicuna, lima, ...)
    question: str
    sem: str  # the SEM's answer
    other: str  # the counterpart's answer


def request_key(messages: list[dict[str, str]], opts: dict[str, Any]) -> str:
    blob = json.dumps([messages, opts], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _parse(reply: Any) -> tuple[float, float]:
    return parse_review(reply.text)


def judge_pairs(pairs: Sequence[Pair], backend: Any, pool: Any, *, cache: Any = None, identity: str = "",
                opts: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], PairwiseResult, str]:
    """Rows (one per pair, with both reviews and scores), the tally, and the pool's summary line.

    ``backend`` has ``async chat(messages, **opts) -> Reply``; ``pool`` is an ``ApiPool``;
    ``cache`` a ``ScoreCache`` (or None).
    """
    from dslrun.runtime.api import ApiRequest

    opts = dict(opts or {"temperature": 0.0, "max_tokens": 1024})
    fp = hashlib.sha256(f"{JUDGE_OP}:{JUDGE_VERSION}:{identity}".encode()).hexdigest()[:24]
    reqs: dict[str, list[dict[str, str]]] = {}
    plan: list[tuple[str, str]] = []
    for p in pairs:
        fwd, rev = review_messages(p.question, p.sem, p.other), review_messages(p.question, p.other, p.sem)
        kf, kr = request_key(fwd, opts), request_key(rev, opts)
        reqs[kf], reqs[kr] = fwd, rev
        plan.append((kf, kr))
    done: dict[str, dict[str, Any]] = {}
    if cache is not None:
        cache.register(fp, JUDGE_OP, JUDGE_VERSION, {"opts": opts}, identity)
        done = cache.get_many(fp, list(reqs))
    todo = [ApiRequest(k, m, opts) for k, m in reqs.items() if k not in done]
    lock = threading.Lock()
    summary = "all reviews cached"

    def on_result(res: Any) -> None:
        if res.ok:
            value = {"scores": list(res.value), "review": res.text, "error": None}
        elif res.reason == "parse" and res.text is not None:
            value = {"scores": list(UNPARSED), "review": res.text, "error": res.error}
        else:  # no reply: not cached, asked again next run
            with lock:
                done[res.key] = {"scores": None, "review": None, "error": res.describe()}
            return
        if cache is not None:
            cache.put_many(fp, [(res.key, value)])
        with lock:
            done[res.key] = value

    if todo:
        summary = str(pool.run_sync(todo, backend, on_result, parse=_parse))
    rows, failed = [], 0
    for p, (kf, kr) in zip(pairs, plan):
        f, r = done[kf], done[kr]
        if f["scores"] is None or r["scores"] is None:
            failed += 1
            continue
        rows.append({"setting": p.setting, "question": p.question, "sem": p.sem, "other": p.other,
                     "scores": tuple(f["scores"]), "scores_reverse": tuple(r["scores"]),
                     "review": f["review"], "review_reverse": r["review"],
                     "unparsed": bool(f["error"] or r["error"])})
    if failed:
        summary += f"; {failed} pair(s) without both reviews were left out (run again to retry)"
    return rows, aggregate(rows), summary


__all__ = ["Pair", "ReviewParseError", "judge_pairs"]
