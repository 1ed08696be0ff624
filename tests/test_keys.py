"""Cache keys are derived: input files by content, endpoints and output names out, and a
source change that keeps its version fails here."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dslrun.core.keys import cache_params, node_fingerprint, stored_names
from dslrun.operators.judge_score import JudgeParams, JudgeScore
from testkit.cli import REPO, dslrun_here, write_pool
from testkit.openai_server import OpenAITestServer

sys.path.insert(0, str(REPO / "tools"))
import code_versions  # noqa: E402

KEY_ENV = "DSLRUN_KEYS_TEST_KEY"


def judge(**kw) -> JudgeScore:
    return JudgeScore(JudgeParams(**{"template": "alpagasus", "model": "m", **kw}))


def test_an_input_file_enters_the_key_by_content_not_by_path(tmp_path):
    """Before: InputPath values were keyed as absolute paths, so a moved recipe recomputed all."""
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "t.txt").write_text("Rate {instruction} {output}")
    (tmp_path / "c.txt").write_text("Rate {instruction} {output} differently")
    a, b, c = (judge(template="custom", template_file=str(p)) for p in
               (tmp_path / "a/t.txt", tmp_path / "b/t.txt", tmp_path / "c.txt"))
    assert node_fingerprint(a) == node_fingerprint(b) != node_fingerprint(c)
    assert cache_params(a)["template_file"].startswith("sha256:")


def test_the_endpoint_is_not_part_of_an_llm_key_but_cache_as_is():
    """Before: base_url was in the params and the model identity: the same model behind another
    host name or port was paid for again."""
    here, there = judge(base_url="http://localhost:8000/v1"), judge(base_url="http://10.1.2.3:9000/v1")
    assert node_fingerprint(here) == node_fingerprint(there) == node_fingerprint(judge())
    assert node_fingerprint(judge(api_key_env="OTHER_KEY")) == node_fingerprint(judge())
    assert node_fingerprint(judge(cache_as="m-2024-08")) != node_fingerprint(judge())
    assert node_fingerprint(judge(model="other")) != node_fingerprint(judge())


def test_the_output_column_name_is_not_part_of_the_key():
    """Before: `quality` recomputed 20 calls another recipe had made under the column `score`."""
    assert node_fingerprint(judge(column="quality")) == node_fingerprint(judge())
    assert stored_names(judge(column="quality")) == {"quality": "score", "quality_reason": "score_reason"}
    assert stored_names(judge()) == {}


SPEC = """
pool = load(path: "pool.json")
rated = judge-score(pool, template: custom, template_file: "t.txt", model: "test-model", base_url: $url,
                    api_key_env: "KEYVAR", column: $col)
save(rated)
param url = "x"
param col = "score"
""".replace("KEYVAR", KEY_ENV)


def test_a_moved_recipe_with_a_renamed_column_on_another_port_pays_for_nothing(tmp_path):
    pytest.importorskip("openai")
    first = tmp_path / "first"
    first.mkdir()
    write_pool(first / "pool.json", [{"instruction": f"Q{i}", "input": "", "output": f"A{i}"} for i in range(6)])
    (first / "t.txt").write_text("Rate 0-5.\n{instruction}\n{output}")
    (first / "spec.sel").write_text(SPEC)
    cache = ["--cache-dir", str(tmp_path / "cache")]
    env = {KEY_ENV: "sk-test"}
    with OpenAITestServer() as srv:
        dslrun_here("run", "spec.sel", "--set", f"url={srv.base_url}", *cache, "-q", "--out", "o", cwd=first, env=env,
               check=True)
        assert srv.total == 6
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(first, moved)
    with OpenAITestServer() as other:  # another port
        dslrun_here("run", "spec.sel", "--set", f"url={other.base_url}", "--set", "col=quality", *cache, "-q",
               "--out", "o2", cwd=moved, env=env, check=True)
        assert other.total == 0
    import pyarrow.parquet as pq

    before = pq.read_table(first / "o" / "selected.scores.parquet").column("score").to_pylist()
    after = pq.read_table(moved / "o2" / "selected.scores.parquet").column("quality").to_pylist()
    assert before == after and len(after) == 6


def test_every_cached_operator_source_matches_its_recorded_version():
    """A source change (comments and docstrings aside) must come with a version bump, or with
    a re-recording that says no value can change: `python tools/code_versions.py --update`."""
    recorded = json.loads(code_versions.GOLDEN.read_text())
    assert code_versions.stale(recorded, code_versions.current()) == []


def test_the_check_catches_a_kernel_change_without_a_bump(tmp_path, monkeypatch):
    recorded = code_versions.current()
    from dslrun.core import code_version

    real = code_version.module_source

    def edited(name: str):
        found = real(name)
        if found and name == "dslrun.operators.lm.ifd":
            return found[0], found[1] + "\nEXTRA = 1\n"
        return found

    monkeypatch.setattr(code_version, "module_source", edited)
    assert code_versions.stale(recorded, code_versions.current()) == [
        f"ifd: source changed, version still {recorded['ifd']['version']}"]
    comment_only = {k: dict(v) for k, v in recorded.items()}
    monkeypatch.setattr(code_version, "module_source", lambda n: (real(n)[0], real(n)[1] + "\n# note\n")
                        if real(n) else None)
    assert code_versions.stale(comment_only, code_versions.current()) == []


TEXT = st.text(st.characters(blacklist_categories=("Cs",)))  # lone surrogates are quarantined before ids


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["user", "assistant", "system"]), TEXT), min_size=1, max_size=4),
       st.tuples(TEXT, TEXT, TEXT))
def test_sample_ids_are_the_hash_of_json_dumps(turns, alpaca):
    # sample_id writes its JSON itself (for speed); it must be json.dumps's bytes, or every cached id moves
    import hashlib

    from dslrun.core.keys import normalise, sample_id

    def reference(payload):
        blob = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    messages = [{"role": r, "content": c} for r, c in turns]
    assert sample_id(messages) == reference([[r, normalise(c)] for r, c in turns])
    assert sample_id(messages, alpaca) == reference(
        {"instruction": normalise(alpaca[0]), "input": normalise(alpaca[1]), "output": normalise(alpaca[2])})


def test_a_field_keyed_when_set_leaves_the_keys_cached_before_it():
    """A parameter added to a cached operator (gradient-sim's projector) keeps the entries
    computed before it: at its default it is not in the key; set, it is."""
    from types import SimpleNamespace
    from typing import Annotated

    from dslrun.core.params import KeyedWhenSet, Params

    class Before(Params):
        dim: int = 8

    class After(Params):
        dim: int = 8
        projector: Annotated[str, KeyedWhenSet()] = "dslrun"

    def key(params):
        return cache_params(SimpleNamespace(params=params))

    assert key(After()) == key(Before()) == {"dim": 8}
    assert key(After(projector="trak")) == {"dim": 8, "projector": "trak"}
