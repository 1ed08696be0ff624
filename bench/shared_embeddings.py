"""Embed the offline shared pools with the default sentence encoder, for ``bench/diverse.py --embeddings``.

Reads every Alpaca-style pool under ``../shared/data`` (the AlpaGasus, Cherry and Dolly
files), drops exact repeats by sample id, embeds the first ``--n`` samples (instruction,
input and output, as the ``embed`` operator's ``of: whole``) with all-MiniLM-L6-v2, and
writes a float32 ``(rows, 384)`` array.

    python bench/shared_embeddings.py --out /tmp/shared_20k.npy   # ~2-4 min on 2 CPU cores
    python bench/diverse.py --embeddings /tmp/shared_20k.npy
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from dslrun.runtime.data.pool_files import read_pool
from dslrun.runtime.models.resident import resolve

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
POOLS = ["alpagasus/random_9k.json", "alpagasus/claude_t45.json", "alpagasus/helpfulness_t45.json",
         "alpagasus/dolly_3k.json", "cherry_llm/cherry_alpaca_5_percent.json", "nuggets/alpaca_gpt4_bad.json"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=20_000)
    args = ap.parse_args()
    from sentence_transformers import SentenceTransformer

    seen: set[str] = set()
    texts: list[str] = []
    for rel in POOLS:
        table = read_pool(SHARED / rel).table
        for sid, ins, inp, out in zip(table.ids, table.column("instruction"), table.column("input"),
                                      table.column("output")):
            if sid not in seen:
                seen.add(sid)
                texts.append(ins + ("\n" + inp if inp else "") + "\n" + out)
    texts = texts[: args.n]
    model = SentenceTransformer(str(resolve("minilm-l6", "sentence-encoder").path), device="cpu")
    start = time.perf_counter()
    emb = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    print(f"embedded {len(texts)} unique samples in {time.perf_counter() - start:.1f}s")
    np.save(args.out, emb.astype(np.float32))


if __name__ == "__main__":
    main()
