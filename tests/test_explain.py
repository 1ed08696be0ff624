"""``dslrun explain``: feasibility profiles derived from the compiled DAG, checked against hand-derived values."""

from __future__ import annotations

import json
import sys

import pytest

from testkit.cli import REPO, SPECS, dslrun_here

sys.path.insert(0, str(REPO / "tools"))
import feasibility_table  # noqa: E402

# Hand-derived from each recipe's steps (see the README's table): LLMs trained, algorithm
# steps (each label step, plus each connected run of selection steps), LLM usages,
# model-free, dataset-free, closed-API-free.
EXPECTED = {
    "longest": (0, 2, 0, True, True, True),            # length | rank
    "random": (0, 1, 0, True, True, True),             # sample
    "alpagasus": (0, 2, 1, True, True, False),         # judge (OpenAI) | filter
    "instag": (0, 2, 1, True, True, False),            # tag (OpenAI) | tag-coverage
    "ifd": (0, 2, 1, False, True, True),               # ifd with the PFM | rank
    "superfiltering": (0, 2, 1, True, True, True),     # proxy ifd | filter+rank
    "superfiltering_d": (0, 4, 1, True, True, True),   # ifd | filter+rank | embed | facility location
    "deita": (0, 4, 3, True, True, True),              # complexity | quality | LM embed | derive+deita
    "instruction_mining": (0, 5, 1, True, True, True),  # length | reward | embed | knn | derive+rank
    # quality | filter | embed | necessity (trains on the seeds) | kcenter+filter+kcenter+union;
    # offline the quality scorer is the PFM itself, so that step is not model-free either
    "mods": (1, 5, 3, False, False, True),
    "less": (1, 2, 1, False, False, True),             # gradient-sim (LoRA warm-up on the pool) | rank
    "nuggets": (0, 2, 1, False, True, True),           # golden score on the PFM | rank
    "evaluate_demo": (0, 2, 0, True, True, True),      # length | rank; evaluate is not part of the selector
    "alpagasus_eval": (0, 2, 1, True, True, False),    # judge (OpenAI) | filter; evaluate left out
}
KEYS = ("trained_llms", "steps", "llm_uses", "model_free", "dataset_free", "closed_api_free")


# `dslrun explain` in this process: a new interpreter a call cost ~2 s each (25 calls);
# tests/test_cli_run.py runs the real command.
def profile(tmp_path, spec, *extra):
    r = dslrun_here("explain", str(spec), "--json", *extra, cwd=tmp_path, check=True)
    return json.loads(r.stdout)


@pytest.mark.parametrize("recipe", sorted(EXPECTED))
def test_recipe_profiles_match_hand_derived_values(recipe, tmp_path):
    if not (SPECS / f"{recipe}.sel").exists():
        pytest.skip(f"{recipe}.sel not in this tree")
    assert profile(tmp_path, SPECS / f"{recipe}.sel") == dict(zip(KEYS, EXPECTED[recipe]))


def test_a_self_hosted_server_is_not_a_closed_api(tmp_path):
    got = profile(tmp_path, SPECS / "alpagasus.sel", "--set", "base_url=http://127.0.0.1:8000/v1")
    assert got["closed_api_free"] is True


def test_a_step_scoring_with_the_pfm_is_not_model_free(tmp_path):
    (tmp_path / "s.sel").write_text(
        'param pfm = "smollm2-135m"\n'
        'p = load(path: "p.json")\n'
        "s = perplexity(p, model: $pfm)\n"
        "e = perplexity(s, model: other-model, column: ppl_other)\n"
        "r = rank(e, by: ppl_response, top: 2)\n"
        "save(r)\n")
    (tmp_path / "p.json").write_text('[{"instruction": "a", "input": "", "output": "b"}]')
    got = profile(tmp_path, tmp_path / "s.sel")
    assert got["model_free"] is False and got["llm_uses"] == 2 and got["steps"] == 3
    text = dslrun_here("explain", "s.sel", cwd=tmp_path, check=True).stdout
    assert "model-free        no  (steps: s)" in text


def test_steps_do_not_depend_on_how_a_cut_is_spelled(tmp_path):
    (tmp_path / "p.json").write_text('[{"instruction": "a", "input": "", "output": "b"}]')
    (tmp_path / "one.sel").write_text('p = load(path: "p.json")\nl = length(p)\n'
                                      "r = rank(l, by: output_chars, top: 1, where: input_chars == 0)\nsave(r)\n")
    (tmp_path / "two.sel").write_text('p = load(path: "p.json")\nl = length(p)\n'
                                      "f = filter(l, where: input_chars == 0)\nr = rank(f, by: output_chars, top: 1)\n"
                                      "save(r)\n")
    assert profile(tmp_path, tmp_path / "one.sel") == profile(tmp_path, tmp_path / "two.sel")


def test_readme_table_is_the_generated_one():
    table = feasibility_table.table()
    assert table.count("\n") == 2 + len(list(SPECS.glob("*.sel")))
    assert table in (REPO / "README.md").read_text(), "regenerate it: python tools/feasibility_table.py"
