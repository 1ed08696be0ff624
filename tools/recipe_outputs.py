"""Fingerprint every recipe's outputs on the shipped pool, to show a refactor changed none of them.

    python tools/recipe_outputs.py > before.json      # on the old commit
    python tools/recipe_outputs.py > after.json       # on the new one
    diff before.json after.json                       # empty: byte-identical outputs

Each recipe runs from an empty cache in a temporary folder on the first 20 rows of
``specs/data/alpaca_random_1k.json`` (the model recipes with the offline SmolLM2 of
``../shared``, the judge recipes against the OpenAI-compatible test server, whose
replies depend only on the request), and the SHA-256 of ``selected.json`` and
``selected.scores.parquet`` is printed per recipe, with the content of ``pool.scores.parquet``
(every loaded sample's scores and why it was dropped). The evaluate recipes fine-tune
models for minutes and are left out; ``--only NAME`` narrows the list.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from testkit.cli import SPECS  # noqa: E402
from testkit.openai_server import OpenAITestServer  # noqa: E402

KEY = "DSLRUN_FINGERPRINT_KEY"
SKIP = {"evaluate_demo", "alpagasus_eval"}  # fine-tune models: minutes each
ARGS = {
    "less": ["limit=8", "r=4", "epochs=1", "dim=128", "fraction=0.25"],
    "nuggets": ["limit=6", "fraction=0.5"],
    "deita": ["k=5"],
    "superfiltering_d": ["k=2", "rate=0.5"],
    "instruction_mining": ["k=5"],
    "mods": ["seeds_k=4", "augment_k=4", "epochs=1", "answer_tokens=16", "quality_threshold=0",
             "necessity_threshold=7"],
    "instag": ["k=6"],
}
API = {"alpagasus", "instag"}


def tags_reply(request: dict) -> str:
    text = request["messages"][-1]["content"]
    n = 1 + len(text) % 4
    return json.dumps([{"tag": f"tag{(len(text) + i) % 7}", "explanation": "x"} for i in range(n)])


def run_recipe(name: str, work: Path, models: Path) -> dict[str, str]:
    sets = [f"limit={20}", *ARGS.get(name, [])]
    if name == "less":
        rows = (SPECS / "data" / "less_target_dolly.jsonl").read_text().splitlines()
        (work / "target.jsonl").write_text("".join(r + "\n" for r in rows[::4]))
        sets.append(f"target={work / 'target.jsonl'}")
    if name == "nuggets":
        anchors = json.loads((SPECS / "data" / "nuggets_anchors_kmeans_100.json").read_text())[:8]
        (work / "anchors.json").write_text(json.dumps(anchors))
        sets.append(f"anchors={work / 'anchors.json'}")
    env = {"DSLRUN_MODEL_CACHE": str(models), KEY: "sk-fingerprint"}
    args = [str(SPECS / f"{name}.sel"), "-q", "--out", "o"]

    def go(extra: list[str]) -> None:
        full = [*args, *(x for s in sets + extra for x in ("--set", s))]
        # no time limit: the model recipes take minutes on a busy CPU
        subprocess.run([sys.executable, "-m", "dslrun.runtime.cli", *full], cwd=work, env={**os.environ, **env},
                       check=True, capture_output=True)

    if name in API:
        reply = tags_reply if name == "instag" else None
        server = OpenAITestServer(reply=reply) if reply else OpenAITestServer(seed=5)
        with server as srv:
            go([f"base_url={srv.base_url}", "model=test-model", f"api_key_env={KEY}"])
    else:
        go([])
    return fingerprint_outputs(work / "o")


def fingerprint_outputs(out: Path) -> dict[str, str]:
    """SHA-256 of each output file, and of the scores' content (rows and schema as JSON: what
    the Parquet file holds, whatever pyarrow version wrote it)."""
    import pyarrow.parquet as pq

    got = {f: hashlib.sha256((out / f).read_bytes()).hexdigest()[:16]
           for f in ("selected.json", "selected.scores.parquet") if (out / f).exists()}
    for name, key in (("selected.scores.parquet", "scores.content"), ("pool.scores.parquet", "pool_scores.content")):
        if (out / name).exists():
            table = pq.read_table(out / name)
            blob = json.dumps([str(table.schema.remove_metadata()), _rounded(table.to_pylist())], sort_keys=True,
                              default=repr)
            got[key] = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return got


def _rounded(x: object) -> object:
    """Floats to 6 significant digits: a local judge batches whatever requests are waiting, so its
    logits move in the last bits with the batch's padding (the selection does not)."""
    if isinstance(x, float):
        return float(f"{x:.6g}")
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", help="a recipe name (repeatable)")
    args = ap.parse_args()
    names = args.only or sorted(p.stem for p in SPECS.glob("*.sel") if p.stem not in SKIP)
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(os.environ.get("DSLRUN_MODEL_CACHE") or Path(tmp) / "models")
        result = {}
        for name in names:
            work = Path(tmp) / name
            work.mkdir()
            result[name] = run_recipe(name, work, models)
            print(f"{name}: {result[name]}", file=sys.stderr)
    print(json.dumps(result, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
