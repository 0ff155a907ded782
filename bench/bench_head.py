"""The lens head's precision against its cost: fp32 vs plain bf16 vs mixed, measured in one run (not a test).

    python bench/bench_head.py                      # SmolLM2, the 64 items of bench_engine.py
    python bench/bench_head.py --items 16 --threads 2

For every head dtype (`layerprobe.head`) the engine scores the workload of bench/bench_engine.py
(fp32 forward, no cache) and the script prints, against the fp32 head:
- max |delta|: the largest difference of a summed candidate log-prob (item x candidate x layer);
- flips: item x layer pairs whose top-scoring candidate changes;
- CPU seconds of `score_items` (process time, so the load of other jobs counts less) and the ratio
  to fp32.
Then, for the mixed head, what bounds its error: on the scored rows of the first --tail-items
items, the tail's share of the partition function (the mass outside the exact top-k) and the
resulting |delta| of the log-sum-exp, per layer where they are largest.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import workload  # noqa: E402

from layerprobe import engine  # noqa: E402
from layerprobe.head import HEAD_DTYPES, LensHead, mixed_logsumexp  # noqa: E402
from layerprobe.models import LoadedModel, load_model  # noqa: E402
from layerprobe.tasks.base import MCItem  # noqa: E402


def compare(reference: list[np.ndarray], other: list[np.ndarray]) -> tuple[float, int, int]:
    """Max |delta| of the summed log-probs, and argmax flips over item x layer (and their count)."""
    delta = max(float(np.abs(a - b).max()) for a, b in zip(reference, other))
    flips = sum(int((a.argmax(axis=0) != b.argmax(axis=0)).sum()) for a, b in zip(reference, other))
    return delta, flips, sum(a.shape[1] for a in reference)


def tail_shares(lm: LoadedModel, items: list[MCItem]) -> list[tuple[int, float, float]]:
    """Per layer: the largest tail share of the mixed head and the largest |delta| of its logsumexp."""
    sequences, positions = [], []
    for item in items:
        prompt = lm.tokenizer(item.prompt)["input_ids"]
        for candidate in item.candidates:
            tokens = lm.tokenizer(candidate, add_special_tokens=False)["input_ids"]
            sequences.append(prompt + tokens)
            positions.append(list(range(len(prompt) - 1, len(prompt) + len(tokens) - 1)))
    states = torch.cat(engine.hidden_states_at(lm, sequences, positions, progress=False), dim=1)
    head = LensHead(lm.adapter, "mixed")
    out = []
    with torch.inference_mode():
        for layer in range(states.shape[0]):
            inputs = lm.adapter.head_input(states[layer])
            exact = torch.logsumexp(lm.adapter.to_logits(states[layer]), dim=-1)
            mixed, share = mixed_logsumexp(head.bf16_logits(inputs), lambda t: head.exact_logits(inputs, t), head.top_k)
            out.append((layer, float(share.max()), float((mixed - exact).abs().max())))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: CPU time = wall time idle)")
    parser.add_argument("--tail-items", type=int, default=8, help="items whose scored rows give the tail shares")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(args.model, device="cpu", dtype="float32")
    items = workload(args.items)
    scores, seconds = {}, {}
    for dtype in HEAD_DTYPES:
        engine.score_items(lm, items[:2], progress=False, use_cache=False, head_dtype=dtype)  # warm up
        start = time.process_time()
        scores[dtype] = engine.score_items(lm, items, progress=False, use_cache=False, head_dtype=dtype).logprob
        seconds[dtype] = time.process_time() - start
    print(f"{args.model}, {args.items} items, fp32 forward, {args.threads} thread(s), CPU seconds of score_items\n")
    print(f"{'head':9s} {'max |delta|':>12s} {'flips':>12s} {'CPU s':>8s} {'vs fp32':>8s}")
    for dtype in HEAD_DTYPES:
        delta, flips, pairs = compare(scores["float32"], scores[dtype])
        print(f"{dtype:9s} {delta:12.5f} {f'{flips}/{pairs}':>12s} {seconds[dtype]:8.1f} "
              f"{seconds[dtype] / seconds['float32']:7.2f}x")
    shares = tail_shares(lm, items[: args.tail_items])
    print(f"\nmixed head, rows of {args.tail_items} items: tail share of the partition function and |delta| of the"
          " logsumexp (largest 5 layers by share)")
    print(f"{'layer':>5s} {'max share':>10s} {'max |d lse|':>12s}")
    for layer, share, delta in sorted(shares, key=lambda r: -r[1])[:5]:
        print(f"{layer:5d} {share:10.3f} {delta:12.5f}")
    print(f"all layers: max |d lse| {max(d for _, _, d in shares):.5f}")


if __name__ == "__main__":
    main()
