"""``ifd`` as a spec step on a tiny local model: same numbers as the kernels, cached, batch-independent."""

from __future__ import annotations

import json

import pytest

from testkit.cli import alpaca, dslrun_here, write_pool

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")



def records(n: int) -> list[dict]:
    rows = alpaca(n)
    rows[3]["output"] = " ".join(["word"] * 900)  # long: truncated by max_length
    return rows


@pytest.mark.parametrize("variant", ["cherry", "superfiltering"])
def test_ifd_step_matches_kernel_and_is_cached(tiny, tmp_path, variant):
    import pyarrow.parquet as pq
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dslrun.operators.lm.ifd import ifd_scores
    from dslrun.operators.lm.templates import get_template

    rows = records(20)
    write_pool(tmp_path / "p.json", rows)
    spec = tmp_path / "s.sel"
    spec.write_text(f'p = load(path: "p.json")\ns = ifd(p, variant: {variant}, model: "{tiny}")\n'
                    f'save(s, path: "o.json")\n')
    env = {"DSLRUN_MODEL_CACHE": str(tmp_path / "models")}
    first = dslrun_here(str(spec), "-q", "--out", ".", cwd=tmp_path, env=env, check=True)
    got = {r["row"]: r for r in pq.read_table(tmp_path / "o.scores.parquet").to_pylist()}

    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    tok = AutoTokenizer.from_pretrained(tiny)
    tmpl = get_template("alpaca" if variant == "cherry" else "superfiltering")
    want = ifd_scores(model, tok, [tmpl.render(r["instruction"], r["input"]) for r in rows],
                      [r["output"] for r in rows], variant=variant, batch_size=1)
    for i, w in enumerate(want):
        g = got[i]
        assert g["ifd_reason"] == w.reason
        for col in ("ifd", "loss_conditioned", "loss_direct", "ppl_conditioned", "ppl_direct"):
            if getattr(w, col) is None:
                assert g[col] is None
            else:
                assert g[col] == pytest.approx(getattr(w, col), rel=1e-5), (i, col)
    assert any(g["ifd_reason"] for g in got.values()), "a random model rates some samples invalid"
    assert "s " in first.stdout

    second = dslrun_here(str(spec), "-q", "--out", ".", cwd=tmp_path, env=env, check=True)
    row = next(line.split() for line in second.stdout.splitlines() if line.startswith("s "))
    assert row[4:6] == ["20", "0"]  # every sample from the cache: no forward pass
    assert json.loads((tmp_path / "run.json").read_text())["model_loads"] == 0


def test_plan_counts_forward_passes(tiny, tmp_path):
    write_pool(tmp_path / "p.json", alpaca(7))
    spec = tmp_path / "s.sel"
    spec.write_text(f'p = load(path: "p.json")\ns = ifd(p, variant: cherry, model: "{tiny}")\nsave(s)\n')
    out = dslrun_here("plan", str(spec), cwd=tmp_path, env={"DSLRUN_MODEL_CACHE": str(tmp_path / "m")}, check=True).stdout
    assert "to compute: 7 samples, 14 model forward passes" in out


def test_perplexity_shares_the_model_load_with_ifd(tiny, tmp_path):
    import math

    import pyarrow.parquet as pq
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = alpaca(6)
    write_pool(tmp_path / "p.json", rows)
    spec = tmp_path / "s.sel"
    spec.write_text(f'p = load(path: "p.json")\ni = ifd(p, variant: cherry, model: "{tiny}")\n'
                    f'x = perplexity(i, of: response, model: "{tiny}")\nsave(x, path: "o.json")\n')
    dslrun_here(str(spec), "-q", "--out", ".", cwd=tmp_path, env={"DSLRUN_MODEL_CACHE": str(tmp_path / "m")}, check=True)
    assert json.loads((tmp_path / "run.json").read_text())["model_loads"] == 1
    got = pq.read_table(tmp_path / "o.scores.parquet").to_pylist()
    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    tok = AutoTokenizer.from_pretrained(tiny)
    for r, g in zip(rows, got):  # hand computation: unbatched forward pass, labels = inputs
        ids = torch.tensor([tok(r["output"])["input_ids"]])
        with torch.no_grad():
            loss = model(ids, labels=ids).loss.item()
        assert g["ppl_response"] == pytest.approx(math.exp(loss), rel=1e-5)
        assert g["ppl_response_tokens"] == ids.shape[1] - 1
