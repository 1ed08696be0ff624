"""Model-influence kernels: how much a sample moves the pending fine-tune model.

Pure functions over a model, a tokenizer and token ids; ``gradient-sim`` (LESS) and
``nuggets`` (one-shot golden score) wire them into the runtime. Importing this package
does not import torch.

- :mod:`.encode`  — samples → token ids with a loss mask (LESS's Tulu chat format, or a
  project template), response tokens only.
- :mod:`.warmup`  — the LoRA warm-up: seeded subset, AdamW, linear schedule, one
  checkpoint (adapter + optimizer moments) per epoch, stored once per key.
- :mod:`.grads`   — per-sample LoRA gradients in one batched backward, Adam preconditioning.
- :mod:`.project` — seeded, chunked Rademacher projection that any device reproduces.
- :mod:`.trak_projection` — ``projector: trak``: TRAK's ``BasicProjector`` as LESS calls it.
- :mod:`.match`   — checkpoint-weighted cosine similarity, mean per subtask, max over subtasks.
- :mod:`.golden`  — Nuggets' zero-shot and one-shot answer log-probabilities, KV cache reuse.
"""
