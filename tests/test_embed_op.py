"""``embed``: causal-LM hidden states and a real sentence encoder, feeding DEITA's filter."""

from __future__ import annotations

import json

import numpy as np
import pytest

from testkit.cli import alpaca, dslrun_here, write_pool

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")



def test_causal_lm_mean_pooling_matches_hand_computation(tiny, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dslrun.operators.embed import Embed, EmbedParams
    from dslrun.runtime.data.pool_files import read_pool
    from dslrun.runtime.execution.context import RunContext
    from dslrun.runtime.execution.sample_runner import run_sample_op

    rows = alpaca(5)
    write_pool(tmp_path / "p.json", rows)
    table = read_pool(tmp_path / "p.json").table
    ctx = RunContext(out_dir=tmp_path, spec_dir=tmp_path, cache=None)
    for pooling in ("mean", "last"):
        op = Embed(EmbedParams(model=str(tiny), kind="causal-lm", pooling=pooling))
        vecs = run_sample_op(op, table, ctx).column("embedding")
        model = AutoModelForCausalLM.from_pretrained(tiny).eval()
        tok = AutoTokenizer.from_pretrained(tiny)
        for r, got in zip(rows, vecs):
            text = r["instruction"] + ("\n" + r["input"] if r["input"] else "") + "\n" + r["output"]
            ids = torch.tensor([tok(text)["input_ids"]])
            with torch.no_grad():
                h = model(ids, output_hidden_states=True).hidden_states[-1][0]
            want = (h.mean(0) if pooling == "mean" else h[-1]).numpy()
            want = want / np.linalg.norm(want)
            np.testing.assert_allclose(got, want, atol=2e-3)  # float16 storage
    assert vecs.dtype == np.float32 and vecs.shape == (5, 32)


def test_minilm_embeddings_drive_deita_and_are_cached(tmp_path):
    pytest.importorskip("sentence_transformers")
    rows = alpaca(12)
    rows[4]["output"] = "The tide comes in and the tide goes out. " * 20  # the highest word counts ...
    rows[5] = dict(rows[4])
    rows[5]["output"] = rows[4]["output"] + " indeed"  # ... and a near-duplicate: another sample, same meaning
    write_pool(tmp_path / "p.json", rows)
    spec = tmp_path / "s.sel"
    spec.write_text('p = load(path: "p.json")\ne = embed(p)\nl = length(e)\n'
                    'd = diverse-sample(l, method: deita, k: 6, by: output_words, threshold: 0.95)\n'
                    'save(d, path: "o.json")\n')
    env = {"DSLRUN_MODEL_CACHE": str(tmp_path / "m")}
    first = dslrun_here(str(spec), "-q", "--out", ".", cwd=tmp_path, env=env, check=True)
    assert "model minilm-l6 resolved from" in first.stderr
    got = json.loads((tmp_path / "o.json").read_text())
    assert len(got) == 6
    second = dslrun_here(str(spec), "-q", "--out", ".", cwd=tmp_path, env=env, check=True)
    row = next(line.split() for line in second.stdout.splitlines() if line.startswith("e "))
    assert row[4:6] == ["12", "0"]
    assert json.loads((tmp_path / "o.json").read_text()) == got

    kept = [r["output"] for r in got]
    assert kept[0] == rows[5]["output"]  # highest score is always kept
    assert rows[4]["output"] not in kept  # second highest, but too similar to the first
