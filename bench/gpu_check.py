"""Check the GPU path on this machine in a few minutes: half precision, speed, memory, --device auto.

    bash scripts/gpu_check.sh                # on a GPU box (< 5 min on one GPU)
    bash scripts/gpu_check.sh --cpu          # dry run on the CPU (fp16 forward, 16 items, a minute or two)

On the packaged model and study 1's factual items it prints one table and exits 1 if a check fails:

- fp16 vs fp32 forward (the lens head in fp32 both times): max |delta| of the summed candidate
  log-probs <= 1 nat, item x layer correctness agreeing in >= 97% of pairs, and per-layer accuracy
  within 0.1 (bf16, with --half bfloat16: 2.5 nats, 95%, 0.1; DESIGN.md measured up to 1.5 nats for bf16);
- tokens per second of the engine against a bare forward over the same tokens (reported, no threshold);
- peak GPU memory of the half-precision engine run, which must stay under `plan_memory`'s estimate
  (on CPU the peak resident memory is reported instead, with no threshold);
- `--device auto` (accelerate's device map from the plan) must give the single-device scores (1e-3).
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from layerprobe import engine  # noqa: E402
from layerprobe.cli import DEFAULT_MODEL, run  # noqa: E402
from layerprobe.errors import LayerprobeError  # noqa: E402
from layerprobe.memory import GIB, plan_memory  # noqa: E402
from layerprobe.metrics import accuracy  # noqa: E402
from layerprobe.models import LoadedModel, load_model  # noqa: E402
from layerprobe.tasks.base import MCItem  # noqa: E402
from layerprobe.tasks.factual import factual_items  # noqa: E402

# dtype -> (max |delta| nats, min item x layer agreement, max per-layer accuracy difference)
THRESHOLDS = {"float16": (1.0, 0.97, 0.1), "bfloat16": (2.5, 0.95, 0.1)}
AUTO_TOLERANCE = 1e-3


@dataclass
class Check:
    name: str
    value: str
    limit: str
    ok: bool = True


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _release(lm: LoadedModel | None) -> None:
    del lm
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def score(lm: LoadedModel, items: list[MCItem], device: str) -> tuple[list[np.ndarray], float]:
    """Scores and seconds of the engine (no disk cache)."""
    _sync(device)
    start = time.perf_counter()
    scores = engine.score_items(lm, items, progress=False, use_cache=False).logprob
    _sync(device)
    return scores, time.perf_counter() - start


def bare_forward_seconds(lm: LoadedModel, sequences: list[list[int]], device: str) -> float:
    """A plain causal forward of the base model over the same tokens, in batches of the engine's token budget."""
    _sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in engine._batches([len(s) for s in sequences], None, engine.DEFAULT_BATCH_TOKENS):
            ids = torch.zeros(len(batch), max(len(sequences[i]) for i in batch), dtype=torch.long)
            for row, i in enumerate(batch):
                ids[row, : len(sequences[i])] = torch.tensor(sequences[i])
            lm.model.base_model(input_ids=ids.to(lm.device), use_cache=False)
    _sync(device)
    return time.perf_counter() - start


def agreement(items: list[MCItem], reference: list[np.ndarray], other: list[np.ndarray], dtype: str) -> list[Check]:
    max_delta, min_agree, max_accuracy = THRESHOLDS[dtype]
    delta = max(float(np.abs(a - b).max()) for a, b in zip(reference, other))
    right = np.stack([accuracy(s, item.correct) for s, item in zip(reference, items)])  # [items, L+1]
    right_other = np.stack([accuracy(s, item.correct) for s, item in zip(other, items)])
    agree = float((right == right_other).mean())
    accuracy_gap = float(np.abs(right.mean(axis=0) - right_other.mean(axis=0)).max())
    return [Check(f"{dtype} vs fp32: max |delta| log-prob", f"{delta:.3f} nats", f"<= {max_delta}", delta <= max_delta),
            Check(f"{dtype} vs fp32: item x layer agreement", f"{agree:.1%}", f">= {min_agree:.0%}", agree >= min_agree),
            Check(f"{dtype} vs fp32: max per-layer accuracy gap", f"{accuracy_gap:.3f}", f"<= {max_accuracy}",
                  accuracy_gap <= max_accuracy)]


def run_checks(model: str, device: str, half: str, n_items: int) -> list[Check]:
    items = factual_items(n_items, seed=0)
    full = load_model(model, device=device, dtype="float32")
    reference, _ = score(full, items, device)
    _release(full)

    plan = plan_memory(model, device, half)
    half_lm = load_model(model, device=device, dtype=half)
    score(half_lm, items[:2], device)  # warm up (CUDA kernels, allocator) before the timed run
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    scores, seconds = score(half_lm, items, device)
    checks = agreement(items, reference, scores, half)
    if device.startswith("cuda"):
        peak, limit = torch.cuda.max_memory_allocated() / GIB, (plan.weights + plan.engine) / GIB
        checks.append(Check(f"peak GPU memory ({half} engine)", f"{peak:.2f} GiB", f"<= plan {limit:.2f} GiB", peak <= limit))
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # the whole process, fp32 model included
        checks.append(Check("peak resident memory (CPU process)", f"{peak:.2f} GiB",
                            f"plan {(plan.weights + plan.engine) / GIB:.2f} GiB, not checked on CPU"))
    encoded = engine._tokenize(half_lm, items)
    sequences = [prompt + [t for c in candidates for t in c] for prompt, candidates in encoded]
    tokens = sum(len(s) for s in sequences)
    bare = bare_forward_seconds(half_lm, sequences, device)
    checks.append(Check("tokens/s: engine | bare forward", f"{tokens / seconds:.0f} | {tokens / bare:.0f}",
                        f"engine at {bare / seconds:.2f}x of bare"))
    _release(half_lm)

    auto = load_model(model, device="auto", dtype=half)
    auto_scores, _ = score(auto, items, device)
    placed = sorted({str(d) for d in (getattr(auto.model, "hf_device_map", None) or {"": auto.device}).values()})
    delta = max(float(np.abs(a - b).max()) for a, b in zip(scores, auto_scores))
    checks.append(Check(f"--device auto ({', '.join(placed)}) vs {device}", f"{delta:.2e} nats", f"<= {AUTO_TOLERANCE}",
                        delta <= AUTO_TOLERANCE))
    _release(auto)
    return checks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="dry run on the CPU (small)")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--half", default="float16", choices=sorted(THRESHOLDS), help="half precision to check (default float16)")
    parser.add_argument("--items", type=int, default=None, help="factual items (default 64 on GPU, 16 with --cpu)")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        raise LayerprobeError("no GPU visible to torch: run on a GPU box, or with --cpu for a dry run")
    device = "cpu" if args.cpu else "cuda"
    n_items = args.items or (16 if args.cpu else 64)
    if args.cpu:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    started = time.perf_counter()
    checks = run_checks(args.model, device, args.half, n_items)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"\ngpu_check: {args.model}, {n_items} factual items, {name}, {time.perf_counter() - started:.0f} s")
    width = max(len(c.name) for c in checks)
    for check in checks:
        mark = "ok  " if check.ok else "FAIL"
        print(f"{mark} {check.name:{width}s}  {check.value:>22s}  ({check.limit})")
    failed = [c.name for c in checks if not c.ok]
    if failed:
        print(f"gpu_check: {len(failed)} check(s) failed: {'; '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run(main)
