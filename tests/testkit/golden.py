"""Golden fixtures: input/expected pairs in tests/fixtures/<kind>/, loaded by one helper.

A fixture is ``NAME.sel`` (or ``NAME.yaml``) with ``NAME.expected`` beside it.
The first line of the spec may be ``# title: …``. Run the tests with
``UPDATE_GOLDEN=1`` to rewrite the expected files after a deliberate change,
then review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def cases(kind: str) -> list[Path]:
    folder = FIXTURES / kind
    return sorted(p for p in folder.iterdir() if p.suffix in (".sel", ".yaml"))


def title(spec: Path) -> str:
    first = spec.read_text(encoding="utf-8").splitlines()[0]
    return first.removeprefix("# title:").strip() if first.startswith("# title:") else spec.stem


def check(spec: Path, actual: str) -> None:
    expected_path = spec.with_suffix(".expected")
    if os.environ.get("UPDATE_GOLDEN") or not expected_path.exists():
        expected_path.write_text(actual, encoding="utf-8")
        if not os.environ.get("UPDATE_GOLDEN"):
            raise AssertionError(f"{expected_path} did not exist; written now — review it and re-run")
        return
    expected = expected_path.read_text(encoding="utf-8")
    assert actual == expected, f"{spec.name} ({title(spec)}): output differs from {expected_path.name}\n{actual}"
