"""Check (or re-record) the source hash of every cached operator against its ``version``.

    python tools/code_versions.py            # list operators whose source changed
    python tools/code_versions.py --update   # re-record tests/fixtures/code_versions.json

Re-record only when no cached value can change (a refactor, a message); when values can
change, bump the operator's ``version`` first, then re-record. See core/code_version.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dslrun.core.code_version import source_hash
from dslrun.operators import registry
from dslrun.operators.base import CachedOperator

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "code_versions.json"


def cached_operators() -> dict[str, type[CachedOperator]]:
    registry._load()
    out: dict[str, type[CachedOperator]] = {}
    todo = list(CachedOperator.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("dslrun.operators.") and "name" in vars(cls):
            out[cls.name] = cls
    return dict(sorted(out.items()))


def current() -> dict[str, dict[str, str]]:
    return {name: {"version": cls.version, "source": source_hash(cls.__module__, cls.kernels)}
            for name, cls in cached_operators().items()}


def stale(recorded: dict[str, dict[str, str]], now: dict[str, dict[str, str]]) -> list[str]:
    """Operators whose source changed while their version did not (or that are new / gone)."""
    problems = []
    for name in sorted(set(recorded) | set(now)):
        old, new = recorded.get(name), now.get(name)
        if old is None or new is None:
            problems.append(f"{name}: {'new' if old is None else 'gone'}")
        elif old["source"] != new["source"] and old["version"] == new["version"]:
            problems.append(f"{name}: source changed, version still {new['version']}")
        elif old["version"] != new["version"] and old["source"] == new["source"]:
            problems.append(f"{name}: version bumped to {new['version']}; re-record the file")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--update", action="store_true", help="re-record the golden file")
    args = ap.parse_args()
    now = current()
    if args.update:
        GOLDEN.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(now)} operators in {GOLDEN}")
        return 0
    problems = stale(json.loads(GOLDEN.read_text()), now)
    print("\n".join(problems) or "every cached operator's source matches its recorded version")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
