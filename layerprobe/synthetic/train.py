"""Train small decoders from scratch on synthetic data: the one training loop of layerprobe.

API (everything a synthetic world needs; nanoGPT-sized, readable top to bottom):

    vocab = Vocab(tokens)                                   # layerprobe.synthetic.vocab
    model = build_model("llama", len(vocab), n_layers=4, d_model=128, n_heads=4, max_len=512,
                        rotary=True, seed=0)
    def batch_fn(step: int) -> torch.LongTensor | tuple[torch.LongTensor, torch.BoolTensor]:
        ...                                                 # [B, T] ids, right-padded with vocab.pad_id;
                                                            # optional loss mask [B, T]: True where the
                                                            # token at that position is a training target
    result = train(model, batch_fn, steps=2000, lr=1e-3, warmup=100, out_dir="out/runs/cfg",
                   curve_csv="out/data/train_cfg.csv", desc="cfg")
    vocab.save("out/runs/cfg/vocab.json")
    lm = wrap(model, vocab)                                 # a LoadedModel for engine/probes
    lm = load_trained("out/runs/cfg")                       # the same, from disk (model/ + vocab.json)

`batch_fn(step)` must be a pure function of the step (seed a generator with it): that is what
makes a resumed run identical to an uninterrupted one. Without a mask, every non-pad target is
trained on. The loss at position t is the cross-entropy of token t+1 given tokens 0..t.

Architectures: `llama` (RMSNorm, SwiGLU, rotary positions) and `gpt2` (LayerNorm, GELU, learned
absolute positions). `gpt2` with `rotary=True` builds a GPT-NeoX block (GPT-2's LayerNorm/GELU
block with rotary positions: transformers has no rotary GPT-2); `llama` has no absolute variant.

Checkpoints (`out_dir/checkpoint.pt`: model, optimizer, step, RNG states, curve so far) are written
atomically every `checkpoint_every` steps and at the end; `train(..., resume=True)` continues
from the last one, and a finished run returns at once. The final weights also go to
`out_dir/model/` (save_pretrained). The curve CSV has columns run, step, tokens, loss, lr.
AdamW (betas 0.9/0.95, weight decay on matrices only), linear warmup, cosine decay to lr/10,
gradient clipping at 1; bf16 autocast on CUDA, fp32 on CPU.

Several processes (`torchrun --nproc_per_node N` or `accelerate launch --num_processes N`):
accelerate's `Accelerator` wraps the model for data-parallel gradients, and each process computes
its contiguous share of the rows of `batch_fn(step)`. Its loss is its share of the *global* batch's
mean (its summed loss over the global target count), so the averaged gradients are those of the
whole batch and a run with N processes follows the 1-process run up to the order of the floating
point sums. Only the main process writes checkpoints, curves and `model/`; the others wait for it
(the run folder must be on a file system every process sees). Under a launcher each process trains
on accelerate's device for it (its own GPU, or the CPU on a machine without one). One process needs
no launcher and runs the same arithmetic as a plain loop.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from layerprobe.errors import LayerprobeError
from layerprobe.models import Adapter, LoadedModel
from layerprobe.results import atomic_write_csv
from layerprobe.synthetic.canon import canon_config, register
from layerprobe.synthetic.vocab import Vocab

Batch = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
CURVE_COLUMNS = ["run", "step", "tokens", "loss", "lr"]


class TrainingClock:
    """Training CPU seconds at the checkpoints of a resumable run: this process's CPU time since the clock
    started, less the time spent grading checkpoints, plus the seconds an interrupted earlier call had
    recorded (the largest `train_cpu_s` in the run's curve rows)."""

    def __init__(self, curve: pd.DataFrame):
        earlier = curve["train_cpu_s"].astype(float).max() if "train_cpu_s" in curve and len(curve) else 0.0
        self.earlier = 0.0 if pd.isna(earlier) else float(earlier)
        self.began = time.process_time()
        self.graded = 0.0

    def seconds(self) -> float:
        return self.earlier + time.process_time() - self.began - self.graded

    @contextmanager
    def grading(self) -> Iterator[None]:
        """Time spent in this block is not training time."""
        start = time.process_time()
        try:
            yield
        finally:
            self.graded += time.process_time() - start


def build_model(arch: str, vocab_size: int, n_layers: int, d_model: int, n_heads: int, max_len: int,
                rotary: bool = True, seed: int = 0, canon: str = "") -> nn.Module:
    """A randomly initialised causal LM from a transformers config (no download, no dropout).

    `canon`: Canon layers at these places of every block, a subset of ABCD (llama only; layerprobe.synthetic.canon)."""
    from transformers import AutoModelForCausalLM, GPT2Config, GPTNeoXConfig, LlamaConfig

    if d_model % n_heads:
        raise LayerprobeError(f"width {d_model} is not divisible by {n_heads} heads")
    special = dict(vocab_size=vocab_size, pad_token_id=Vocab.pad_id, bos_token_id=Vocab.bos_id,
                   eos_token_id=Vocab.eos_id, tie_word_embeddings=False)
    if canon and arch != "llama":
        raise LayerprobeError(f"Canon layers are built for --arch llama, not {arch}")
    if arch == "llama":
        if not rotary:
            raise LayerprobeError("llama uses rotary positions only; use --arch gpt2 for absolute positions")
        config = (partial(canon_config, canon) if canon else LlamaConfig)(
                             hidden_size=d_model, intermediate_size=4 * d_model, num_hidden_layers=n_layers,
                             num_attention_heads=n_heads, num_key_value_heads=n_heads,
                             max_position_embeddings=max_len, **special)
    elif arch == "gpt2" and rotary:
        config = GPTNeoXConfig(hidden_size=d_model, intermediate_size=4 * d_model, num_hidden_layers=n_layers,
                               num_attention_heads=n_heads, max_position_embeddings=max_len, rotary_pct=1.0,
                               use_parallel_residual=False, hidden_dropout=0.0, attention_dropout=0.0, **special)
    elif arch == "gpt2":
        config = GPT2Config(n_embd=d_model, n_layer=n_layers, n_head=n_heads, n_positions=max_len,
                            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **special)
    else:
        raise LayerprobeError(f"unknown architecture '{arch}' (llama or gpt2)")
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def n_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warmup over `warmup` steps, then cosine decay to lr/10 at the last step."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - 1 - warmup)
    return lr * (0.1 + 0.45 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def _optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def _target_mask(batch: Batch) -> torch.Tensor:
    """[B, T-1] True where the next token is a training target (the mask's, or every non-pad token)."""
    ids, mask = batch if isinstance(batch, tuple) else (batch, batch != Vocab.pad_id)
    return mask[:, 1:].bool()


def lm_loss(model: nn.Module, batch: Batch, n_targets: int | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy over the targets the mask selects (default: non-pad tokens).

    With `n_targets`, the summed loss divided by it instead: this batch's share of the mean over a
    larger batch that holds `n_targets` targets (a process's share of a data-parallel step)."""
    ids = batch[0] if isinstance(batch, tuple) else batch
    logits = model(input_ids=ids).logits[:, :-1].float()
    targets = ids[:, 1:].masked_fill(~_target_mask(batch), -100)
    losses = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                                         reduction="mean" if n_targets is None else "sum")
    return losses if n_targets is None else losses / n_targets


def _to_device(batch: Batch, device: torch.device) -> Batch:
    if isinstance(batch, tuple):
        return tuple(part.to(device) for part in batch)
    return batch.to(device)


def _share(batch: Batch, index: int, count: int) -> Batch:
    """Process `index`'s contiguous rows of the step's batch (of `count` processes; earlier ones take one more)."""
    rows = (batch[0] if isinstance(batch, tuple) else batch).shape[0]
    if rows < count:
        raise LayerprobeError(f"a batch of {rows} sequences cannot be shared by {count} processes: "
                              "use a larger --batch or fewer processes")
    if isinstance(batch, tuple):
        return tuple(part.tensor_split(count)[index] for part in batch)
    return batch.tensor_split(count)[index]


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_torch_save(obj: object, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(model: nn.Module, target: Path) -> None:
    """`save_pretrained` into `target`, which appears whole or not at all."""
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model.save_pretrained(staging / "model")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging / "model", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@dataclass
class TrainResult:
    steps: int
    tokens: int
    final_loss: float  # mean loss over the last logged interval
    curve: pd.DataFrame  # run, step, tokens, loss, lr
    seconds: float  # wall time of this call (0 when the run was already finished)


def train(model: nn.Module, batch_fn: Callable[[int], Batch], steps: int, lr: float = 1e-3,
          warmup: int | None = None, out_dir: str | Path | None = None, resume: bool = True,
          curve_csv: str | Path | None = None, desc: str = "train", run: str | None = None,
          weight_decay: float = 0.1, log_every: int | None = None, checkpoint_every: int | None = None,
          progress: bool = True, on_checkpoint: Callable[[int], None] | None = None) -> TrainResult:
    """Train `model` in place for `steps` steps of `batch_fn(step)`; resumable through `out_dir`.

    `on_checkpoint(step)` runs on the main process after each checkpoint (e.g. to grade the model so
    far for a learning curve; it may switch the model to eval mode, training resumes in train mode).
    Under a launcher every process calls this with the same arguments (see the module notes)."""
    from accelerate import Accelerator

    # the process state of layerprobe.parallel (cpu=True starts gloo on a machine without a GPU);
    # mixed precision stays the loop's own (bf16 autocast on CUDA), whatever a launcher's config says
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="no")
    n_processes, rank = accelerator.num_processes, accelerator.process_index
    if n_processes > 1:  # each process on its own device; alone, the model stays where the caller put it
        model.to(accelerator.device)
    device = next(model.parameters()).device
    warmup = max(1, steps // 20) if warmup is None else warmup
    log_every = log_every or max(1, steps // 100)
    checkpoint_every = checkpoint_every or max(1, steps // 10)
    checkpoint_every = math.ceil(checkpoint_every / log_every) * log_every  # a resume starts a fresh log interval
    run = run or desc
    optimizer = _optimizer(model, lr, weight_decay)
    checkpoint = Path(out_dir) / "checkpoint.pt" if out_dir is not None else None
    start, tokens, rows = 0, 0, []
    if checkpoint is not None:
        if accelerator.is_main_process:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
        if resume and checkpoint.exists():
            state = torch.load(checkpoint, map_location=device, weights_only=False)
            if state["steps"] != steps:
                raise LayerprobeError(f"{checkpoint} is a {state['steps']}-step run, not {steps}: "
                                      "use another --out or delete it")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            _set_rng_state(state["rng"])
            start, tokens, rows = state["step"], state["tokens"], state["curve"]
    # `model` and `optimizer` stay the plain objects (what is saved); the prepared ones train
    parallel_model, parallel_optimizer = accelerator.prepare(model, optimizer, device_placement=[False, False])

    def save(step: int) -> None:
        if accelerator.is_main_process:
            if checkpoint is not None:
                _atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": _rng_state(),
                                    "step": step, "steps": steps, "tokens": tokens, "curve": rows}, checkpoint)
            if curve_csv is not None:
                atomic_write_csv(curve_csv, pd.DataFrame(rows, columns=CURVE_COLUMNS))
            if on_checkpoint is not None:
                on_checkpoint(step)
                model.train()
        accelerator.wait_for_everyone()

    began = time.perf_counter()
    model.train()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    interval_loss, interval_steps, interval_tokens, interval_start = 0.0, 0, 0, time.perf_counter()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=desc, dynamic_ncols=True,
               disable=not progress or not accelerator.is_main_process)
    for step in bar:
        batch = batch_fn(step)  # the global batch: every process builds it, then trains on its share
        n_targets = int(_target_mask(batch).sum())
        rate = lr_at(step, steps, lr, warmup)
        for group in optimizer.param_groups:
            group["lr"] = rate
        with autocast:  # this process's share of the global batch's mean loss (all of it when alone)
            loss = lm_loss(parallel_model, _to_device(_share(batch, rank, n_processes), device), n_targets)
        parallel_optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss * n_processes)  # the gradients are averaged over the processes
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        parallel_optimizer.step()
        n_tokens = (batch[0] if isinstance(batch, tuple) else batch).numel()
        tokens += n_tokens
        interval_loss, interval_steps, interval_tokens = interval_loss + loss.item(), interval_steps + 1, interval_tokens + n_tokens
        if (step + 1) % log_every == 0 or step + 1 == steps:
            interval_loss = _sum_over_processes(accelerator, interval_loss)
            rows.append({"run": run, "step": step + 1, "tokens": tokens, "loss": interval_loss / interval_steps, "lr": rate})
            speed = interval_tokens / max(1e-9, time.perf_counter() - interval_start)
            bar.set_postfix(loss=f"{interval_loss / interval_steps:.3f}", tok_s=f"{speed:,.0f}")
            interval_loss, interval_steps, interval_tokens, interval_start = 0.0, 0, 0, time.perf_counter()
        if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
            save(step + 1)
    bar.close()
    model.eval()
    if out_dir is not None and accelerator.is_main_process and (start < steps or not (Path(out_dir) / "model").exists()):
        save_model(model, Path(out_dir) / "model")
    accelerator.wait_for_everyone()
    del parallel_model, parallel_optimizer
    accelerator.free_memory()  # drops the data-parallel wrapper, so a later train() of this model wraps it afresh
    curve = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    final = float(curve["loss"].iloc[-1]) if len(curve) else float("nan")
    seconds = time.perf_counter() - began if start < steps else 0.0
    return TrainResult(steps=steps, tokens=tokens, final_loss=final, curve=curve, seconds=seconds)


def _sum_over_processes(accelerator, value: float) -> float:
    """`value` summed over the processes (itself when alone), in float64 so one process's number is unchanged."""
    if accelerator.num_processes == 1:
        return value
    return accelerator.reduce(torch.tensor(value, dtype=torch.float64, device=accelerator.device), "sum").item()


def wrap(model: nn.Module, vocab: Vocab, name: str = "synthetic") -> LoadedModel:
    """A LoadedModel (eval mode, frozen) so `engine.hidden_states_at` and the probes can read it."""
    model.eval()
    parameter = next(model.parameters())
    return LoadedModel(name=name, model=model, tokenizer=vocab, adapter=Adapter(model),
                       device=parameter.device, dtype=parameter.dtype)


def load_trained(out_dir: str | Path, name: str | None = None, device: str = "cpu") -> LoadedModel:
    """Load what `train` and the caller saved in `out_dir` (model/ and vocab.json) as a LoadedModel."""
    from transformers import AutoModelForCausalLM

    out_dir = Path(out_dir)
    if not (out_dir / "model" / "config.json").exists() or not (out_dir / "vocab.json").exists():
        raise LayerprobeError(f"{out_dir} holds no finished run (model/ and vocab.json): train it first")
    register()  # a Canon model's config type
    model = AutoModelForCausalLM.from_pretrained(out_dir / "model", dtype=torch.float32).to(device)
    model.requires_grad_(False)
    return wrap(model, Vocab.load(out_dir / "vocab.json"), name=name or out_dir.name)
