"""Print the README's feasibility table: `dslrun explain --json` over every recipe in specs/.

The command runs in this process (``cli.main``), one interpreter for all the recipes.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

SPECS = Path(__file__).resolve().parents[1] / "specs"


def explain_json(spec: Path) -> dict:
    from dslrun.runtime.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["explain", str(spec), "--json"])
    if code != 0:
        raise SystemExit(f"dslrun explain {spec} --json failed ({code})")
    return json.loads(out.getvalue())


def table() -> str:
    lines = ["| spec | LLMs trained | algorithm steps | LLM usages | model-free | dataset-free | closed-API-free |",
             "|---|---|---|---|---|---|---|"]
    for spec in sorted(SPECS.glob("*.sel")):
        p = explain_json(spec)
        flags = [("yes" if p[k] else "no") for k in ("model_free", "dataset_free", "closed_api_free")]
        lines.append(f"| `{spec.name}` | {p['trained_llms']} | {p['steps']} | {p['llm_uses']} | "
                     + " | ".join(flags) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    print(table(), end="")


if __name__ == "__main__":
    main()
