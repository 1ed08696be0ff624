"""distilabel's default way of sending the same chats to the same server (run by ``bench/judge_vllm.py``).

Runs in a Python with ``distilabel[openai]`` (not dslrun's): a ``Pipeline`` of
``LoadDataFromDicts`` and ``ChatGeneration(llm=OpenAILLM(...))`` with the default batch
settings (``input_batch_size`` 50, so 50 calls in flight) and the same ``max_new_tokens`` and
``temperature`` as dslrun's requests (so both do the same work; greedy decoding gives the same
replies). Reads ``{"base_url", "model", "chats", "max_tokens", "temperature"}`` as JSON from the
file named by argv[1]; prints ``{"seconds", "n", "ok", "output_tokens"}`` as JSON on the last line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> None:
    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import ChatGeneration

    job = json.loads(Path(sys.argv[1]).read_text())
    gen = {"max_new_tokens": job["max_tokens"], "temperature": job["temperature"]}
    with Pipeline(name="dslrun-bench-baseline") as pipeline:
        load = LoadDataFromDicts(data=[{"messages": chat} for chat in job["chats"]])
        chat = ChatGeneration(llm=OpenAILLM(model=job["model"], base_url=job["base_url"], api_key="none",
                                            generation_kwargs=gen))
        load >> chat
    t0 = time.perf_counter()
    distiset = pipeline.run(use_cache=False)
    seconds = time.perf_counter() - t0
    rows = distiset["default"]["train"]
    ok = sum(1 for r in rows if r.get("generation"))
    tokens = 0
    for r in rows:
        got = (r.get("distilabel_metadata") or {}).get("statistics_chat_generation_0", {}).get("output_tokens") or 0
        tokens += sum(got) if isinstance(got, list) else int(got)
    print(json.dumps({"seconds": seconds, "n": len(rows), "ok": ok, "output_tokens": tokens}))


if __name__ == "__main__":
    main()
