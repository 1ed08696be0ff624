"""Supervised fine-tuning of a causal LM on a subset: LoRA (peft) or full, loss on response tokens only.

As Stanford Alpaca's ``train.py`` (which the IFD, AlpaGasus and Superfiltering papers
fine-tune with): the prompt template renders the instruction, the response follows, an EOS
ends it, and prompt tokens get label −100 so only the response is learnt. Multi-turn
samples learn every assistant turn, with all user turns masked. Defaults are the
literature's: 3 epochs, lr 2e-5 (full) / 2e-4 (LoRA), max length 512, AdamW, cosine
schedule with 3% warm-up. Runs are seeded; a checkpoint is cached under a key of (model
identity, hash of the subset's sample ids, every hyper-parameter), so an evaluation run
twice trains once.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FINETUNE_VERSION = "1"  # bump when training results change


@dataclass(frozen=True)
class FinetuneConfig:
    method: str = "lora"  # lora | full
    epochs: float = 3.0
    lr: float | None = None  # default 2e-4 LoRA, 2e-5 full
    batch_size: int = 16  # samples per optimiser step (gradient accumulation over micro batches)
    micro_batch: int = 4
    max_length: int = 512
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] | None = None  # None: peft's default for the architecture
    template: str = "alpaca"
    seed: int = 0

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (2e-4 if self.method == "lora" else 2e-5)


@dataclass
class TrainResult:
    path: Path
    cached: bool
    n_samples: int = 0
    n_skipped: int = 0  # prompt alone fills max_length: no response token to learn
    steps: int = 0
    losses: list[float] = field(default_factory=list)  # mean response-token loss per optimiser step
    epoch_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def checkpoint_key(model_identity: str, sample_ids: Sequence[str], cfg: FinetuneConfig) -> str:
    ids = hashlib.sha256("\n".join(sorted(sample_ids)).encode()).hexdigest()
    blob = json.dumps({"v": FINETUNE_VERSION, "model": model_identity, "ids": ids, "cfg": asdict(cfg)},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def segments(sample: Mapping[str, Any], template: Any) -> list[tuple[str, bool]]:
    """(text, learn?) pieces of a sample: prompts are not learnt, responses are."""
    messages = sample.get("messages") or []
    if int(sample.get("n_turns") or 1) > 1 and messages:
        pieces: list[tuple[str, bool]] = []
        done = ""
        for prompt, reply in template.prompts(messages):
            if not prompt.startswith(done):  # a template that rewrites earlier turns: keep the last only
                pieces, done = [], ""
            pieces += [(prompt[len(done):], False), (reply, True)]
            done = prompt + reply
        return pieces
    return [(template.render(sample.get("instruction", ""), sample.get("input", "") or ""), False),
            (sample.get("output", ""), True)]


def encode(tokenizer: Any, pieces: list[tuple[str, bool]], max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels (−100 on prompt tokens), BOS first if the tokenizer uses one, EOS last."""
    ids: list[int] = []
    labels: list[int] = []
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None and getattr(tokenizer, "add_bos_token", False):
        ids.append(bos)
        labels.append(-100)
    for i, (text, learn) in enumerate(pieces):
        toks = tokenizer(text, add_special_tokens=False)["input_ids"]
        if learn and i == len(pieces) - 1 and tokenizer.eos_token_id is not None:
            toks = [*toks, tokenizer.eos_token_id]
        ids += toks
        labels += toks if learn else [-100] * len(toks)
    return ids[:max_length], labels[:max_length]


def _batches(rows: list[tuple[list[int], list[int]]], order: list[int], size: int, pad: int):
    import torch

    for start in range(0, len(order), size):
        chunk = [rows[i] for i in order[start:start + size]]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, (i, lab) in enumerate(chunk):
            ids[r, :len(i)], labels[r, :len(lab)], mask[r, :len(i)] = torch.tensor(i), torch.tensor(lab), 1
        yield ids, labels, mask


def token_loss_sum(model: Any, ids: Any, labels: Any, mask: Any) -> tuple[Any, int]:
    """Sum of next-token losses over label positions, and how many there are."""
    import torch.nn.functional as F

    dev = next(model.parameters()).device
    ids, labels, mask = ids.to(dev), labels.to(dev), mask.to(dev)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    target = labels[:, 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100,
                           reduction="sum")
    return loss, int((target != -100).sum())


def finetune(base: Any, tokenizer: Any, samples: Sequence[Mapping[str, Any]], template: Any,
             cfg: FinetuneConfig, out: Path, progress: Any = None) -> TrainResult:
    """Train a copy of ``base`` (left untouched) on ``samples`` and save it to ``out``."""
    import copy

    import torch

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rows = [encode(tokenizer, segments(s, template), cfg.max_length) for s in samples]
    kept = [r for r in rows if any(lab != -100 for lab in r[1][1:])]
    result = TrainResult(out, cached=False, n_samples=len(kept), n_skipped=len(rows) - len(kept))
    if not kept:
        raise ValueError("no sample has a response token within max_length; raise max_length")
    model = copy.deepcopy(base)
    if cfg.method == "lora":
        from peft import LoraConfig, get_peft_model

        lcfg = LoraConfig(task_type="CAUSAL_LM", r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                          lora_dropout=cfg.lora_dropout,
                          target_modules=list(cfg.lora_targets) if cfg.lora_targets else None)
        model = get_peft_model(model, lcfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(kept) / cfg.batch_size)
    total = max(1, math.ceil(steps_per_epoch * cfg.epochs))
    warm = math.ceil(total * cfg.warmup_ratio)

    def lr_at(step: int) -> float:  # linear warm-up, then cosine to 0 (transformers' cosine schedule)
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch.Generator().manual_seed(cfg.seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    task = progress.task(f"fine-tune {out.name[:8]}", total) if progress else None
    step, epoch_sum, epoch_n = 0, 0.0, 0
    while step < total:
        order = torch.randperm(len(kept), generator=gen).tolist()
        for start in range(0, len(order), cfg.batch_size):
            if step >= total:
                break
            group = order[start:start + cfg.batch_size]
            n_tok = sum(sum(lab != -100 for lab in kept[i][1][1:]) for i in group)
            opt.zero_grad(set_to_none=True)
            step_loss = 0.0
            for ids, labels, mask in _batches(kept, group, cfg.micro_batch, pad):
                loss_sum, _ = token_loss_sum(model, ids, labels, mask)
                (loss_sum / n_tok).backward()  # token mean over the whole optimiser batch
                step_loss += float(loss_sum.detach()) / n_tok
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            result.losses.append(step_loss)
            epoch_sum, epoch_n = epoch_sum + step_loss, epoch_n + 1
            if task is not None:
                task.advance(1)
        result.epoch_losses.append(epoch_sum / max(1, epoch_n))
        epoch_sum, epoch_n = 0.0, 0
    if task is not None:
        task.done()
    result.steps = step
    model.eval()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)  # LoRA: the adapter only; full: the whole model
    result.seconds = time.perf_counter() - t0
    (tmp / "dslrun_train.json").write_text(json.dumps({**result.as_dict(), "config": asdict(cfg)}, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # a checkpoint appears whole or not at all
    return result


def load_cached(out: Path) -> TrainResult | None:
    meta = out / "dslrun_train.json"
    if not meta.is_file():
        return None
    d = json.loads(meta.read_text())
    d.pop("config", None)
    d.update(path=out, cached=True)
    return TrainResult(**d)


def load_finetuned(base: Any, out: Path, cfg: FinetuneConfig) -> Any:
    """The fine-tuned model for inference (LoRA merged into a copy of ``base``)."""
    import copy

    if cfg.method == "lora":
        from peft import PeftModel

        model = PeftModel.from_pretrained(copy.deepcopy(base), str(out)).merge_and_unload()
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(out), dtype=next(base.parameters()).dtype)
        model.to(next(base.parameters()).device)
    model.eval()
    return model


def mean_loss(model: Any, tokenizer: Any, samples: Sequence[Mapping[str, Any]], template: Any,
              max_length: int = 512, batch: int = 8) -> dict[str, float]:
    """Held-out mean response-token loss and its perplexity (token-weighted over the set)."""
    import torch

    rows = [encode(tokenizer, segments(s, template), max_length) for s in samples]
    rows = [r for r in rows if any(lab != -100 for lab in r[1][1:])]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total, n = 0.0, 0
    with torch.inference_mode():
        for ids, labels, mask in _batches(rows, list(range(len(rows))), batch, pad):
            s, k = token_loss_sum(model, ids, labels, mask)
            total, n = total + float(s), n + k
    loss = total / n if n else float("nan")
    return {"loss": loss, "ppl": math.exp(loss) if n else float("nan"), "samples": len(rows), "tokens": n}
