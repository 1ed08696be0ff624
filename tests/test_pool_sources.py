"""Pools from Parquet shards, datasets folders and hf:// ids; saved as datasets folders and for
LLaMA-Factory. Every source gives the samples, ids and row numbers the same records give as JSON."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dslrun
from dslrun.runtime.data.pool_files import PoolError, read_pool
from testkit.cli import alpaca, write_pool

datasets = pytest.importorskip("datasets")

SPEC = """param pool = "pool.json"
param split = "train"
p = load(path: $pool, split: $split)
l = length(p)
top = rank(l, by: output_chars, top: 5)
save(top{save})
"""
RECS = alpaca(40)


def spec(save: str = "", split: bool = False) -> str:
    text = SPEC.format(save=save)
    return text if split else text.replace(", split: $split", "")


def ids_rows(pool) -> tuple[list[str], list[int]]:
    t = read_pool(pool).table
    return t.column("id").tolist(), t.column("_row").tolist()


@pytest.fixture
def reference(tmp_path):
    return ids_rows(write_pool(tmp_path / "pool.json", RECS))


def test_parquet_shards_by_folder_and_by_glob(tmp_path, reference):
    shards = tmp_path / "shards"
    shards.mkdir()
    table = pa.Table.from_pylist(RECS)
    pq.write_table(table.slice(0, 15), shards / "part-0.parquet")
    pq.write_table(table.slice(15), shards / "part-1.parquet")
    assert ids_rows(shards) == reference  # one row numbering across the shards, in file order
    assert ids_rows(str(shards / "part-*.parquet")) == reference
    res = dslrun.run(spec(), pool=str(shards / "*.parquet"), out=tmp_path / "o", cache_dir=tmp_path / "c")
    assert (tmp_path / "o" / "selected.parquet").exists()
    assert "ids_sha256" in res.lock["inputs"][0]
    errs = dslrun.check(spec(), pool=str(tmp_path / "none-*.parquet"))
    assert any(e.message.startswith("no file matches") for e in errs)


def test_datasets_folders_with_one_split_or_several(tmp_path, reference):
    ds = datasets.Dataset.from_list(RECS)
    ds.save_to_disk(str(tmp_path / "one"))
    datasets.DatasetDict({"train": ds, "test": ds.select(range(10))}).save_to_disk(str(tmp_path / "dd"))
    assert ids_rows(tmp_path / "one") == reference
    assert ids_rows(tmp_path / "dd") == reference  # train, by default
    assert read_pool(tmp_path / "dd", split="test").table.column("id").tolist() == reference[0][:10]
    with pytest.raises(PoolError, match="no split `dev`; it has train, test"):
        read_pool(tmp_path / "dd", split="dev")
    res = dslrun.run(spec(split=True), set={"split": "test"}, pool=str(tmp_path / "dd"), cache_dir=tmp_path / "c")
    assert res.stats["p"].rows_out == 10


def test_hub_ids_go_through_load_dataset(tmp_path, reference, monkeypatch):
    """No hub at test time: load_dataset is replaced by a local folder, and the call it gets is checked."""
    local = datasets.Dataset.from_list(RECS)
    calls = []

    def fake(name, split=None, streaming=False):
        calls.append((name, split, streaming))
        return local.to_iterable_dataset() if streaming else local

    monkeypatch.setattr(datasets, "load_dataset", fake)
    t = read_pool("hf://user/pool:train").table
    assert (t.column("id").tolist(), t.column("_row").tolist()) == reference
    assert t.meta["format"] == "hf"
    assert read_pool("hf://user/pool", limit=3, split="train", preview=True).table.column("id").tolist() == reference[0][:3]
    assert calls == [("user/pool", "train", False), ("user/pool", "train", True)]
    res = dslrun.run(spec(), pool="hf://user/pool:train", out=tmp_path / "o", cache_dir=tmp_path / "c")
    assert datasets.load_from_disk(str(tmp_path / "o" / "selected")).num_rows == 5  # an hf pool saves as hf
    assert res.lock["inputs"][0]["path"] == "hf://user/pool:train"


def test_an_unreachable_hub_is_one_clear_error(monkeypatch):
    def offline(*a, **kw):
        raise ConnectionError("Couldn't reach 'user/pool' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(PoolError, match=r"hf://user/pool: cannot load `user/pool` from the Hugging Face hub "
                                        r"\(ConnectionError: Couldn't reach .*Offline\?"):
        read_pool("hf://user/pool")
    err = dslrun.check(spec(), pool="hf://user/pool")[0]
    assert "cannot load `user/pool`" in err.message and err.span.line == 3


def test_save_as_a_datasets_folder(tmp_path):
    pool = write_pool(tmp_path / "pool.jsonl", RECS, "jsonl")
    res = dslrun.run(spec(', format: hf, path: "subset"'), pool=str(pool), out=tmp_path / "o", cache_dir=tmp_path / "c")
    back = datasets.load_from_disk(str(tmp_path / "o" / "subset"))
    assert back.to_list() == res.selected.to_pylist()
    assert back.column_names == ["instruction", "input", "output"]
    assert pq.read_table(tmp_path / "o" / "subset.scores.parquet").column("id").to_pylist() == \
        res.scores.column("id").to_pylist()


def test_save_for_llamafactory_alpaca_with_mapped_fields(tmp_path):
    recs = [{"prompt": r["instruction"], "input": r["input"], "response": r["output"], "system": "be brief"}
            for r in RECS]
    pool = write_pool(tmp_path / "pool.json", recs)
    (tmp_path / "o" / "lf").mkdir(parents=True)
    (tmp_path / "o" / "lf" / "dataset_info.json").write_text(json.dumps({"alpaca_en": {"file_name": "a.json"}}))
    text = spec(', format: llamafactory, path: "lf/subset.json"').replace(
        "load(path: $pool)", 'load(path: $pool, fields: {instruction: "prompt", output: "response"})')
    dslrun.run(text, pool=str(pool), out=tmp_path / "o", cache_dir=tmp_path / "c")
    info = json.loads((tmp_path / "o" / "lf" / "dataset_info.json").read_text())
    assert info["alpaca_en"] == {"file_name": "a.json"}  # other entries kept
    assert info["subset"] == {"file_name": "subset.json", "formatting": "alpaca",
                              "columns": {"prompt": "prompt", "query": "input", "response": "response",
                                          "system": "system"}}
    saved = json.loads((tmp_path / "o" / "lf" / "subset.json").read_text())
    assert len(saved) == 5 and set(saved[0]) == {"prompt", "input", "response", "system"}


@pytest.mark.parametrize("layout", ["sharegpt", "messages"])
def test_save_for_llamafactory_conversations(tmp_path, layout):
    if layout == "sharegpt":
        recs = [{"conversations": [{"from": "human", "value": r["instruction"]}, {"from": "gpt", "value": r["output"]}]}
                for r in RECS]
        tags = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}
    else:
        recs = [{"messages": [{"role": "system", "content": "hi"}, {"role": "user", "content": r["instruction"]},
                              {"role": "assistant", "content": r["output"]}]} for r in RECS]
        tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                "system_tag": "system"}
    pool = write_pool(tmp_path / "pool.jsonl", recs, "jsonl")
    dslrun.run(spec(", format: llamafactory, name: picked"), pool=str(pool), out=tmp_path / "o",
               cache_dir=tmp_path / "c")
    info = json.loads((tmp_path / "o" / "dataset_info.json").read_text())
    column = "conversations" if layout == "sharegpt" else "messages"
    assert info == {"picked": {"file_name": "selected.jsonl", "formatting": "sharegpt",
                               "columns": {"messages": column}, "tags": tags}}
    lines = (tmp_path / "o" / "selected.jsonl").read_text().splitlines()
    assert len(lines) == 5 and set(json.loads(lines[0])) == {column}
