"""Content hashes of model files, memoised by (path, size, mtime) so 500 MB is hashed once."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

#: Files that decide a model's outputs: weights, configs, tokenizer, chat template, code.
HASHED_SUFFIXES = {".json", ".safetensors", ".bin", ".txt", ".model", ".gguf", ".jinja", ".py"}


class HashMemo:
    """sha256 of files, memoised by (resolved path, size, mtime_ns) in a JSON file."""

    def __init__(self, file: Path):
        self.file, self.dirty = file, False
        try:
            self.data = json.loads(file.read_text())
        except (OSError, ValueError):
            self.data = {}

    def file_sha256(self, path: Path) -> str:
        path = path.resolve()
        st = path.stat()
        key, stamp = str(path), [st.st_size, st.st_mtime_ns]
        hit = self.data.get(key)
        if hit and hit[:2] == stamp:
            return hit[2]
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        self.data[key], self.dirty = [*stamp, h.hexdigest()], True
        return h.hexdigest()

    def dir_sha256(self, folder: Path) -> str:
        """Hash of (relative path, sha256) of the weight, config and tokenizer files."""
        h = hashlib.sha256()
        files = sorted(
            p for p in folder.rglob("*")
            if p.is_file() and p.suffix in HASHED_SUFFIXES and not p.name.startswith(".")
            and not any(part.startswith(".") for part in p.relative_to(folder).parts[:-1])
        )
        if not files:
            raise FileNotFoundError(f"{folder} holds no model files")
        for p in files:
            h.update(f"{p.relative_to(folder).as_posix()}\t{self.file_sha256(p)}\n".encode())
        return h.hexdigest()

    def save(self) -> None:
        if self.dirty:
            write_json(self.file, self.data)
            self.dirty = False


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
