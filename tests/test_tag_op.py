"""``tag`` (InsTag): prompt bytes, reply parsing, each normalisation step, and a whole run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dslrun.operators.llm import tag_norm
from dslrun.operators.llm.instag import instag_messages, parse_tags
from dslrun.operators.llm.prompts import ParseError
from testkit.cli import REPO, dslrun_here, write_pool
from testkit.openai_server import OpenAITestServer

pytest.importorskip("openai")
KEY_ENV = "DSLRUN_TAG_TEST_KEY"


def test_prompt_is_the_instagger_format():
    msgs = instag_messages({"instruction": "Fix my {code}.", "input": "x = 1", "output": "ignored"})
    assert msgs == [
        {"role": "system", "content": "A chat between a curious user and an artificial intelligence assistant. "
                                      "The assistant gives helpful, detailed, and polite answers to the human's "
                                      "questions."},
        {"role": "user", "content": "Please identify tags of user intentions in the following user query and "
                                    "provide an explanation for each tag. Please respond in the JSON format "
                                    '{"tag": str, "explanation": str}.\nUser query: Fix my {code}.\nx = 1'}]


@pytest.mark.parametrize("reply,tags", [
    ('[{"tag": "coding", "explanation": "e"}, {"tag": "debug", "explanation": "f"}]', ["coding", "debug"]),
    ('Sure:\n```json\n[{"tag": "math"}]\n```\nHope it helps', ["math"]),
    ('{"tag": "writing", "explanation": "x"}', ["writing"]),
    ('{"tag": "a", "explanation": "x"}\n{"tag": "b", "explanation": "y"}', ["a", "b"]),
    ('[{"tag": "a", "explanation": "unterminated}, {"tag": "b"', ["a", "b"]),  # broken JSON: the regex
    ('["poetry", "rhyme"]', ["poetry", "rhyme"]),
])
def test_parse_tags(reply, tags):
    assert parse_tags(reply) == tags


@pytest.mark.parametrize("reply", ["", "No tags here.", '[{"explanation": "no tag"}]', '{"tag": "  "}'])
def test_parse_tags_without_tags_is_an_error(reply):
    with pytest.raises(ParseError):
        parse_tags(reply)


def test_lower_and_stem():
    pool = [["Code-Debugging!", "code debugging", "Math"], ["  Creative   Writing "]]
    assert tag_norm.lower(pool) == [["code debugging", "math"], ["creative writing"]]
    assert tag_norm.stem(tag_norm.lower(pool)) == [["code debug", "math"], ["creativ write"]]


def test_frequency_drops_rare_tags():
    pool = [["a", "b"], ["a", "c"], ["a", "b"], []]
    assert tag_norm.frequency(pool, 2) == [["a", "b"], ["a"], ["a", "b"], []]
    assert tag_norm.frequency(pool, 3) == [["a"], ["a"], ["a"], []]


def test_semantic_merge_into_the_most_frequent_neighbour():
    vec = {"math": [1, 0], "maths": [0.999, 0.04], "poetry": [0, 1]}
    pool = [["math"], ["math", "poetry"], ["maths"]]
    got = tag_norm.semantic(pool, lambda names: np.array([vec[n] for n in names]), merge_distance=0.01)
    assert got == [["math"], ["math", "poetry"], ["math"]]
    assert tag_norm.semantic(pool, lambda names: np.array([vec[n] for n in names]), merge_distance=1e-6) == pool


def test_association_merges_a_tag_that_always_comes_with_another():
    pool = [["python", "coding"]] * 3 + [["coding"]] * 2 + [["poetry"]]
    got = tag_norm.association(pool, min_count=3, threshold=0.9)
    assert got == [["coding"]] * 5 + [["poetry"]]  # python (3) always with coding (5)
    assert tag_norm.association(pool, min_count=4, threshold=0.9) == pool


def tags_reply(request: dict) -> str:
    query = request["messages"][-1]["content"].split("User query: ")[1]
    n = int(query.split()[1])  # "Task N ..." from testkit.cli.alpaca
    tags = [{"tag": f"Topic-{j}", "explanation": "x"} for j in range(n % 4)] + [{"tag": "General", "explanation": "y"}]
    return "Here you go:\n" + json.dumps(tags)


def test_instag_spec_tags_normalises_and_samples_by_coverage(tmp_path):
    records = [{"instruction": f"Task {i} please", "input": "", "output": f"done {i}"} for i in range(20)]
    write_pool(tmp_path / "pool.json", records)
    args = ["run", str(REPO / "specs" / "instag.sel"), "-q", "--out", "out", "--set", "pool=pool.json",
            "--set", "model=test-model", "--set", f"api_key_env={KEY_ENV}", "--set", "k=6"]
    with OpenAITestServer(reply=tags_reply) as srv:
        dslrun_here(*args, "--set", f"base_url={srv.base_url}", cwd=tmp_path, env={KEY_ENV: "sk-x"}, check=True)
        assert srv.total == 20
        import pyarrow.parquet as pq

        rows = pq.read_table(tmp_path / "out" / "selected.scores.parquet").to_pylist()
        # tag-coverage: most tags first; a pass takes a sample only for a new tag
        # five passes each take one 4-tag sample (i % 4 == 3), the sixth the first 3-tag one
        assert sorted(r["n_tags"] for r in rows) == [3, 4, 4, 4, 4, 4]
        first = json.loads((tmp_path / "out" / "selected.json").read_text())[0]
        assert int(first["instruction"].split()[1]) % 4 == 3
        assert rows[0]["tags"] == ["topic 0", "topic 1", "topic 2", "general"]
        dslrun_here(*args, "--set", f"base_url={srv.base_url}", "--set", "alpha=11", cwd=tmp_path,
               env={KEY_ENV: "sk-x"}, check=True)
        assert srv.total == 20  # normalisation changed, no call made
        rows = pq.read_table(tmp_path / "out" / "selected.scores.parquet").to_pylist()
        # topic 1 (10 samples) and topic 2 (5) fall under alpha 11; topic 0 (15) and general (20) stay
        assert rows[0]["tags"] == ["topic 0", "general"] and max(r["n_tags"] for r in rows) == 2
