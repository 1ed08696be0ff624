"""distilabel's default way of sending the same chats to the same server (run by ``bench/judge_vllm.py``).

Runs in a Python with ``distilabel[openai]`` (not dslrun's). What a ``ChatGeneration`` task with
its default batch settings does: ``OpenAILLM`` (its defaults: ``timeout`` 120 s, ``max_retries``
6 in the openai client) generates each batch of ``input_batch_size`` = 50 inputs concurrently
(``generate_outputs``), one batch after another, with the same ``max_new_tokens`` and
``temperature`` as dslrun's requests (both do the same work; greedy decoding gives the same
replies). The ``Pipeline`` around it is left out: its start-up is not timed, and on this
machine it failed after generating, building its dataset from batches where some generations
were None (an Arrow cast error). Reads ``{"base_url", "model", "chats", "max_tokens",
"temperature", "timeout"}`` (``timeout`` null: distilabel's default) as JSON from the file named by argv[1]; prints ``{"seconds", "n", "ok",
"output_tokens"}`` as JSON on the last line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

BATCH = 50  # ChatGeneration's default input_batch_size


def main() -> None:
    from distilabel.models import OpenAILLM

    job = json.loads(Path(sys.argv[1]).read_text())
    extra = {} if job.get("timeout") is None else {"timeout": int(job["timeout"])}
    llm = OpenAILLM(model=job["model"], base_url=job["base_url"], api_key="none", **extra)
    llm.load()
    chats = job["chats"]
    ok = tokens = 0
    t0 = time.perf_counter()
    for start in range(0, len(chats), BATCH):
        outs = llm.generate_outputs(inputs=chats[start:start + BATCH], num_generations=1,
                                    max_new_tokens=job["max_tokens"], temperature=job["temperature"])
        for out in outs:
            ok += sum(1 for g in out.get("generations") or [] if g)
            got = (out.get("statistics") or {}).get("output_tokens") or 0
            tokens += sum(got) if isinstance(got, list) else int(got)
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "n": len(chats), "ok": ok, "output_tokens": tokens}))


if __name__ == "__main__":
    main()
