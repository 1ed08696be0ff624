"""Every recipe in specs/ checks and explains; the local-model recipes run end to end on 20 real samples (slow).

The LLM-judge recipes (alpagasus, instag) run end to end against the OpenAI-compatible
test server in tests/test_judge_score.py and tests/test_tag_op.py; the IFD ones in
tests/test_recipes_offline.py.
"""

from __future__ import annotations

import json

import pytest

from testkit.cli import SHARED, SPECS, dslrun, dslrun_here

RECIPES = sorted(p.stem for p in SPECS.glob("*.sel"))


# In this process (dslrun_here): four commands a recipe, each a new interpreter that imported
# torch again cost about 3 min of the default run; tests/test_cli_run.py runs the real command.
@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_checks_explains_and_plans(recipe, tmp_path, request):
    for twin in (f"{recipe}.sel", f"{recipe}.yaml"):
        dslrun_here("check", str(SPECS / twin), cwd=tmp_path, check=True)
    dslrun_here("explain", str(SPECS / f"{recipe}.sel"), cwd=tmp_path, check=True)
    models = request.getfixturevalue("model_cache")  # plan resolves the offline model to key its lookups
    plan = dslrun_here("plan", str(SPECS / f"{recipe}.sel"), "--set", "limit=20", cwd=tmp_path, check=True,
                       env={"DSLRUN_MODEL_CACHE": str(models)})
    assert "load" in plan.stdout



# recipe -> (settings, the step whose cached samples a re-run must hit, columns every kept row has)
LOCAL_RUNS = {
    "deita": (["k=5"], "quality", ("complexity", "quality", "evol_score")),
    "superfiltering_d": (["k=2", "rate=0.5"], "scored", ("ifd",)),
    "instruction_mining": (["k=5"], "rewarded", ("reward", "knn_6", "predicted_log_loss")),
    "mods": (["seeds_k=4", "augment_k=4", "epochs=1", "answer_tokens=16", "quality_threshold=0",
              "necessity_threshold=7"], "answered", ("quality",)),
}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(LOCAL_RUNS))
def test_recipe_plans_and_runs_on_20_real_samples(recipe, model_cache, tmp_path):
    import pyarrow.parquet as pq

    settings, cached_step, columns = LOCAL_RUNS[recipe]
    args = [str(SPECS / f"{recipe}.sel"), "--set", "limit=20", "--set", f"pool={SHARED / 'data/alpagasus/random_9k.json'}"]
    for s in settings:
        args += ["--set", s]
    env = {"DSLRUN_MODEL_CACHE": str(model_cache)}
    plan = dslrun("plan", *args, cwd=tmp_path, env=env, check=True)
    assert cached_step in plan.stdout
    dslrun(*args, "-q", "--out", "o", cwd=tmp_path, env=env, check=True)
    selected = json.loads((tmp_path / "o" / "selected.json").read_text())
    scores = pq.read_table(tmp_path / "o" / "selected.scores.parquet").to_pylist()
    assert 0 < len(selected) == len(scores) <= 20
    for row in scores:
        assert all(row[c] is not None for c in columns), row
    again = dslrun(*args, "-q", "--out", "o2", cwd=tmp_path, env=env, check=True)
    line = next(x.split() for x in again.stdout.splitlines() if x.startswith(cached_step + " "))
    # every sample a cache hit, none recomputed; a two-phase step (necessity: answers, then their
    # scores) adds both phases' hits, so hits are a whole multiple of the rows
    rows, hits, computed = int(line[2]), int(line[4]), int(line[5])
    assert computed == 0 and hits > 0 and hits % rows == 0, line
    assert (tmp_path / "o2" / "selected.json").read_text() == (tmp_path / "o" / "selected.json").read_text()
