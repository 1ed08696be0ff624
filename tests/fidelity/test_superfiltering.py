"""Superfiltering against the released code's rule (tianyi-lab/Superfiltering, ``code_ifd/``).

The reference follows ``data_analysis.py`` (prompt ``"{instruction}\\n{input}\\n"``, texts
encoded with ``truncation=True``; the response alone cut to ``max_length - prompt_len + 1``
tokens and scored with ``labels=input_ids``; the conditioned text scored from
``len(encode(prompt))``), ``put_analysis_to_data.py`` (IFD = ppl_conditioned / ppl_direct)
and ``select_data.py`` (keep IFD < 1, sort highest first, stable, keep the first N) in our
own code, then runs ``specs/superfiltering.sel`` with ``top: N`` for the original's count.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from testkit.cli import SPECS, alpaca, dslrun_here, write_pool  # noqa: E402

LONG = " ".join(["Blue is a primary color, and so are red and yellow."] * 90)  # > 1024 tokens


def superfiltering_ifd(model, tok, row, max_length=1024):
    prompt = f"{row['instruction']}\n{row['input']}\n" if row["input"] else f"{row['instruction']}\n"
    whole = prompt + row["output"]
    prompt_len = len(tok.encode(prompt, truncation=True, max_length=max_length))

    def hf_loss(ids, labels):
        with torch.no_grad():
            return float(model(torch.tensor([ids]), labels=torch.tensor([labels])).loss)

    direct = tok.encode(row["output"], truncation=True, max_length=max_length - prompt_len + 1)
    loss_d = hf_loss(direct, direct)
    cond = tok.encode(whole, truncation=True, max_length=max_length)
    start = len(tok.encode(whole[:whole.rfind(row["output"])]))
    loss_c = hf_loss(cond, [-100] * start + cond[start:])
    return math.exp(loss_c) / math.exp(loss_d)


def test_superfiltering_recipe_keeps_the_originals_top_n(tiny, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = alpaca(12)
    rows[5]["output"] = LONG
    write_pool(tmp_path / "pool.json", rows)
    model, tok = AutoModelForCausalLM.from_pretrained(tiny).eval(), AutoTokenizer.from_pretrained(tiny)
    assert len(tok.encode(LONG)) > 1024
    ifd = [superfiltering_ifd(model, tok, r) for r in rows]
    valid = [i for i, x in enumerate(ifd) if x < 1]
    assert 3 < len(valid) < len(rows)
    want = sorted(valid, key=lambda i: ifd[i], reverse=True)[:3]

    env = {"DSLRUN_MODEL_CACHE": str(tmp_path / "models")}
    dslrun_here(str(SPECS / "superfiltering.sel"), "-q", "--out", str(tmp_path / "out"), "--set",
           f"pool={tmp_path / 'pool.json'}", "--set", f"model={tiny}", "--set", "top=3", "--set", "rate=null",
           cwd=tmp_path, env=env, check=True)
    import pyarrow.parquet as pq

    got = pq.read_table(next((tmp_path / "out").glob("*.scores.parquet"))).to_pylist()
    assert [r["row"] for r in got] == want
    for r in got:
        assert r["ifd"] == pytest.approx(ifd[r["row"]], rel=1e-5)
