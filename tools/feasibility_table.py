"""Print the README's feasibility table: `dslrun explain --json` over every recipe in specs/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SPECS = Path(__file__).resolve().parents[1] / "specs"


def main() -> None:
    print("| spec | LLMs trained | algorithm steps | LLM usages | model-free | dataset-free | closed-API-free |")
    print("|---|---|---|---|---|---|---|")
    for spec in sorted(SPECS.glob("*.sel")):
        out = subprocess.run([sys.executable, "-m", "dslrun.runtime.cli", "explain", str(spec), "--json"],
                             capture_output=True, text=True, check=True).stdout
        p = json.loads(out)
        flags = [("yes" if p[k] else "no") for k in ("model_free", "dataset_free", "closed_api_free")]
        print(f"| `{spec.name}` | {p['trained_llms']} | {p['steps']} | {p['llm_uses']} | " + " | ".join(flags) + " |")


if __name__ == "__main__":
    main()
