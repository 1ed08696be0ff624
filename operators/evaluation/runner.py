"""The body of ``evaluate``: train (or reuse) each model, generate, measure held-out loss, judge, compare."""

from __future__ import annotations

import functools
import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dslrun.operators.evaluation import efficiency as eff
from dslrun.operators.evaluation.finetune import FinetuneConfig
from dslrun.operators.evaluation.pairwise import Pair
from dslrun.runtime.data.out_paths import make_dirs
from dslrun.runtime.data.pool_files import atomic_write

if TYPE_CHECKING:
    from dslrun.core.context import RunContext
    from dslrun.operators.evaluate import Evaluate
    from dslrun.runtime.data.table import Table

ANSWER_KEYS = ("answer", "response", "output", "Answer")


def _samples(table: Table) -> list[dict[str, Any]]:
    cols = [c for c in ("id", "instruction", "input", "output", "messages", "n_turns") if c in table.column_names]
    return table.rows(cols)


def variants(op: Evaluate, selected: Table, ctx: RunContext) -> dict[str, Table]:
    """name → training table: ``sem`` first, then each counterpart."""
    p = op.p
    out = {"sem": selected}
    pool: Table | None = ctx.refs.get(p.pool) if p.pool else None
    for c in p.counterparts:
        if c in ("full", "random"):
            if pool is None:
                raise ValueError(f"counterpart {c!r} needs `pool: <the pool step>`")
            if c == "full":
                out["full"] = pool
            else:
                k = min(len(selected), len(pool))
                pick = np.random.default_rng(p.seed).choice(len(pool), size=k, replace=False)
                out["random"] = pool.take(np.sort(pick))
        elif c in ctx.refs:
            out[c] = ctx.refs[c]
        else:
            raise ValueError(f"counterpart {c!r} is neither full, random nor a step of the spec")
    return out


def finetune_config(op: Evaluate) -> FinetuneConfig:
    p = op.p
    return FinetuneConfig(method=p.method, epochs=p.epochs, lr=p.lr, batch_size=p.batch_size,
                          micro_batch=p.micro_batch, max_length=p.max_length, warmup_ratio=p.warmup_ratio,
                          lora_r=p.lora_r, lora_alpha=p.lora_alpha, lora_dropout=p.lora_dropout,
                          lora_targets=tuple(p.lora_targets) if p.lora_targets else None,
                          template=p.template, seed=p.seed)


def checkpoint_root(ctx: RunContext) -> Path:
    return ctx.cache_root / "finetune"


def train_and_generate(op: Evaluate, tables: dict[str, Table], sets: dict[str, list[dict[str, str]]],
                       ctx: RunContext) -> tuple[dict[str, Any], dict[str, dict[str, list[str]]]]:
    """Per variant: training record and held-out loss; and its answers per evaluation set."""
    from dslrun.operators.evaluation import finetune as ft
    from dslrun.operators.evaluation.generate import generate
    from dslrun.operators.lm.templates import get_template
    from dslrun.runtime.models.resident import identity

    p, cfg = op.p, finetune_config(op)
    base, tok = ctx.models.causal_lm(p.pfm, device=p.device, dtype=p.dtype)
    template = get_template(p.template, tok)
    model_id = identity(p.pfm, "causal-lm")
    heldout = load_eval_heldout(p.heldout, p.heldout_limit) if p.heldout else None
    gen_opts: dict[str, Any] = {"max_new_tokens": p.max_new_tokens, "temperature": p.temperature, "seed": p.seed}
    info: dict[str, Any] = {}
    answers: dict[str, dict[str, list[str]]] = {}
    hkey = hashlib.sha256(json.dumps([[h["id"] for h in heldout or []], p.max_length, p.template]).encode())

    def heldout_loss(load: Any, folder: Path) -> dict[str, Any]:
        """Cached beside the checkpoint: a re-run computes no loss twice. ``load()`` gives the model."""
        f = folder / f"heldout-{hkey.hexdigest()[:16]}.json"
        if f.is_file():
            return json.loads(f.read_text())
        value = ft.mean_loss(load(), tok, heldout or [], template, p.max_length)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(f, lambda tmp: tmp.write_text(json.dumps(value)))
        return value

    if heldout:
        info["pfm"] = {"heldout": heldout_loss(lambda: base, checkpoint_root(ctx) / f"pfm-{model_id.split(':')[-1][:24]}")}
    for name, table in tables.items():
        samples = _samples(table)
        key = ft.checkpoint_key(model_id, [s["id"] for s in samples], cfg)
        path = (checkpoint_root(ctx) / key).resolve()
        trained = ft.load_cached(path)
        if trained is None:
            trained = ft.finetune(base, tok, samples, template, cfg, path, progress=ctx.progress)
        ctx.stats.notes.append(f"{name}: {'reused' if trained.cached else 'trained'} {trained.n_samples} samples"
                               f" → {path}")
        # Loaded only when a held-out loss or an answer is not cached yet.
        model = functools.cache(functools.partial(ft.load_finetuned, base, path, cfg))
        rec: dict[str, Any] = {"samples": len(samples), "checkpoint": str(path), "train": trained.as_dict()}
        if heldout:
            rec["heldout"] = heldout_loss(model, path)
        if p.benchmarks:
            rec["benchmarks"] = run_benchmarks(p.benchmarks, model, tok, template, path)
        answers[name] = {}
        for setting, prompts in sets.items():
            texts = [template.render(q["instruction"], q["input"]) for q in prompts]
            gkey = hashlib.sha256(json.dumps([texts, gen_opts]).encode()).hexdigest()[:16]
            gfile = path / f"generations-{gkey}.json"
            if gfile.is_file():
                answers[name][setting] = json.loads(gfile.read_text())
                continue
            t0 = time.perf_counter()
            answers[name][setting] = generate(model(), tok, texts, batch_size=p.gen_batch, **gen_opts)
            rec.setdefault("generate_seconds", 0.0)
            rec["generate_seconds"] += time.perf_counter() - t0
            atomic_write(gfile, lambda tmp, a=answers[name][setting]: tmp.write_text(json.dumps(a)))
        info[name] = rec
        model.cache_clear()
    return info, answers


def run_benchmarks(specs: list[str], load: Any, tok: Any, template: Any, folder: Path) -> dict[str, float]:
    """Scores from benchmark plug-ins (``module:function``), cached beside the checkpoint per plug-in."""
    import importlib

    scores: dict[str, float] = {}
    for spec in specs:
        f = folder / f"bench-{hashlib.sha256(spec.encode()).hexdigest()[:16]}.json"
        if f.is_file():
            scores.update(json.loads(f.read_text()))
            continue
        module, _, func = spec.partition(":")
        if not func:
            raise ValueError(f"benchmark {spec!r}: expected 'module:function'")
        got = {k: float(v) for k, v in getattr(importlib.import_module(module), func)(load(), tok, template).items()}
        atomic_write(f, lambda tmp, got=got: tmp.write_text(json.dumps(got)))
        scores.update(got)
    return scores


def benchmark_ratio(models: dict[str, Any], other: str) -> dict[str, Any] | None:
    """SEM / counterpart per benchmark metric and their mean (TEDD-Ranker's PIR before its transform)."""
    sem, ref = (models.get("sem") or {}).get("benchmarks"), (models.get(other) or {}).get("benchmarks")
    if not sem or not ref:
        return None
    ratios = {k: sem[k] / ref[k] for k in sem if ref.get(k)}
    return {"per_metric": ratios, "mean": sum(ratios.values()) / len(ratios)} if ratios else None


def load_eval_heldout(path: str, limit: int | None) -> list[dict[str, Any]]:
    from dslrun.runtime.data.pool_files import read_pool

    return _samples(read_pool(path, limit=limit or 0).table)


def load_answers(path: str) -> dict[str, str]:
    from dslrun.operators.evaluation.generate import PROMPT_KEYS

    text = Path(path).read_text(encoding="utf-8")
    recs = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines() if x.strip()]
    out = {}
    for i, r in enumerate(recs):
        q = next((r[k] for k in PROMPT_KEYS if r.get(k)), None)
        a = next((r[k] for k in ANSWER_KEYS if k in r), None)
        if q is None or a is None:
            raise ValueError(f"{path}: record {i} needs a prompt field and an answer field ({', '.join(ANSWER_KEYS)})")
        out[str(q)] = str(a)
    return out


def judge_backend(op: Evaluate, ctx: RunContext) -> tuple[Any, Any, str]:
    """(backend, api pool, judge identity) from the judge settings, as the LLM operators build them."""
    from dslrun.operators.llm.base import DEFAULT_MODEL, llm_identity
    from dslrun.runtime.api.connect import backend_for, pool_for

    j = op.p.judge
    model = j.model or DEFAULT_MODEL[j.backend]
    backend = backend_for(j, model, ctx.models, op.env_vars().get("judge"))
    return backend, pool_for(j, backend), llm_identity(j, model)


def run_evaluation(op: Evaluate, selected: Table, ctx: RunContext) -> dict[str, Any]:
    from dslrun.operators.evaluation.generate import load_eval_set, setting_name
    from dslrun.operators.evaluation.pairwise import judge_pairs

    p = op.p
    out = ctx.out_dir / (p.out or ctx.node)
    make_dirs(out)  # below --out, whatever links it holds
    results: dict[str, Any] = {"node": ctx.node, "pfm": p.pfm, "selected": len(selected), "counterparts": {}}
    pool_table = ctx.refs.get(p.pool) if p.pool else None
    if pool_table is not None:
        results["pool"] = len(pool_table)
        results["sdf"] = eff.sdf(len(selected), len(pool_table))
    if p.sem_answers:  # generations made elsewhere: judge only
        sem, other = load_answers(p.sem_answers), load_answers(p.counterpart_answers or "")
        setting = setting_name(p.sem_answers)
        comparisons = {"counterpart": [Pair(setting, q, a, other[q]) for q, a in sem.items() if q in other]}
    else:
        sets = {setting_name(f): load_eval_set(f, p.eval_limit) for f in p.eval}
        tables = variants(op, selected, ctx)
        results["models"], answers = train_and_generate(op, tables, sets, ctx)
        comparisons = {c: [Pair(s, q["instruction"], a_sem, a_other)
                           for s, prompts in sets.items()
                           for q, a_sem, a_other in zip(prompts, answers["sem"][s], answers[c][s])]
                       for c in tables if c != "sem"}
        _write_jsonl(out / "generations.jsonl", [
            {"setting": s, "instruction": q["instruction"], "input": q["input"],
             **{name: answers[name][s][i] for name in answers}}
            for s, prompts in sets.items() for i, q in enumerate(prompts)])
    backend, pool, judge_id = judge_backend(op, ctx)
    opts = {"temperature": p.judge.temperature or 0.0, "max_tokens": p.judge.max_tokens or 1024}
    if p.judge.seed is not None:
        opts["seed"] = p.judge.seed
    reviews = []
    for name, pairs in comparisons.items():
        rows, tally, summary = judge_pairs(pairs, backend, pool, cache=ctx.cache, identity=judge_id, opts=opts)
        ctx.stats.notes.append(f"judge sem vs {name}: {summary}")
        d = tally.as_dict()
        d["pir"] = eff.pir([t["winning_score"] for t in d["per_set"].values()]) if d["per_set"] else None
        if results.get("models") and (ratio := benchmark_ratio(results["models"], name)):
            d["benchmark_ratio"] = ratio
        results["counterparts"][name] = d
        reviews += [{"counterpart": name, **r} for r in rows]
        t = d["total"]
        ctx.stats.notes.append(f"sem vs {name}: {t['win']}W/{t['tie']}T/{t['loss']}L, winning score "
                               f"{t['winning_score']:.3f}, PIR {d['pir'] if d['pir'] is None else round(d['pir'], 3)}")
    _write_jsonl(out / "reviews.jsonl", reviews)
    _place(results, out, ctx)
    atomic_write(out / "results.json", lambda tmp: tmp.write_text(json.dumps(results, indent=1, default=str) + "\n"))
    ctx.stats.notes.append(f"wrote {out / 'results.json'}")
    return results


def _place(results: dict[str, Any], out: Path, ctx: RunContext) -> None:
    """The recipe's point: PIR against the BM (full) when there is one, else the first counterpart."""
    cps = results["counterparts"]
    if "sdf" not in results or not cps:
        return
    ref = "full" if "full" in cps else next(iter(cps))
    if cps[ref]["pir"] is None:
        return
    point = eff.efficiency(results["sdf"], cps[ref]["pir"])
    results["efficiency"] = {"against": ref, **point}
    try:
        png = eff.plot(out / "efficiency.png", [eff.Point(f"{ctx.node} (vs {ref})", point["sdf"], point["pir"])])
        results["efficiency"]["graph"] = str(png.relative_to(ctx.out_dir))  # relative to the run folder
    except ImportError:  # matplotlib is optional: the numbers stand without the picture
        ctx.stats.notes.append("efficiency graph skipped: pip install 'dslrun[eval]' for matplotlib")


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
