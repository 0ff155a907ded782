"""Engine vs the naive study-1 scorer vs the floor, measured in one run (not a timed test).

    python bench/bench_engine.py                      # SmolLM2, 64 items, fp32 and bf16
    python bench/bench_engine.py --items 16 --naive-items 4

Workload: multiple-choice items with ~60-token prompts and 4-8 candidates of 3-12 tokens.
- engine: `layerprobe.engine.score_items` (packed prompt + candidates, lens at scored rows only).
- naive:  `layerprobe.reference.naive_score_items` (batch 1, one forward per candidate, lens at
          every position of every layer), on the first --naive-items items, scaled to all items.
- floor:  a bare forward over the same unique tokens (prompt + candidates, plain causal, no hidden
          states) plus one unembedding + log-softmax of every (candidate token, layer) pair, run as
          one matmul in row chunks of the engine's size (all 84k rows at once would need 16 GB).
Each method runs in its own process, so its peak memory (max RSS above the loaded model) is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from layerprobe import engine  # noqa: E402
from layerprobe.models import load_model  # noqa: E402
from layerprobe.reference import naive_score_items  # noqa: E402
from layerprobe.tasks.base import MCItem  # noqa: E402

WORDS = """time year people way day man thing woman life child world school state family student group
country problem hand part place case week company system program question work government number night
point home water room mother area money story fact month lot right study book eye job word business issue
side kind head house service friend father power hour game line end member law car city community name
president team minute idea kid body information back parent face others level office door health person
art war history party result change morning reason research girl guy moment air teacher force education""".split()


def workload(n_items: int, seed: int = 0) -> list[MCItem]:
    """Deterministic items of ~60-token prompts and 4-8 candidates of 3-12 tokens (SmolLM2 tokenizer)."""
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(n_items):
        prompt = " ".join(rng.choice(WORDS, size=int(rng.integers(50, 60)))).capitalize() + ". Answer:"
        candidates = [" " + " ".join(rng.choice(WORDS, size=int(rng.integers(3, 12))))
                      for _ in range(int(rng.integers(4, 9)))]
        items.append(MCItem(prompt, candidates, [0]))
    return items


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def floor(lm, items: list[MCItem]) -> None:
    """Bare forward over the unique tokens, then the lens as one chunked matmul over all pairs."""
    sequences, n_pairs = [], 0
    for item in items:
        prompt = lm.tokenizer(item.prompt)["input_ids"]
        candidates = [lm.tokenizer(c, add_special_tokens=False)["input_ids"] for c in item.candidates]
        sequences.append(prompt + [t for c in candidates for t in c])
        n_pairs += sum(len(c) for c in candidates)
    with torch.inference_mode():
        for start in range(0, len(sequences), 8):
            batch = sequences[start:start + 8]
            ids = torch.zeros(len(batch), max(map(len, batch)), dtype=torch.long)
            for b, s in enumerate(batch):
                ids[b, : len(s)] = torch.tensor(s)
            lm.model.base_model(input_ids=ids.to(lm.device), use_cache=False)
        weight = lm.adapter.unembed.weight.float()
        rows = n_pairs * (lm.n_layers + 1)
        chunk_rows = engine.LOGIT_CHUNK_BYTES // (4 * weight.shape[0])  # the engine's memory bound
        states = torch.randn(chunk_rows, weight.shape[1], device=weight.device)
        for start in range(0, rows, chunk_rows):
            chunk = states[: min(chunk_rows, rows - start)]
            torch.log_softmax(chunk @ weight.T, dim=-1)[:, 0].sum()
    print(f"floor: {n_pairs} candidate tokens x {lm.n_layers + 1} layers = {rows} lens rows", file=sys.stderr)


def measure(method: str, model: str, dtype: str, n_items: int, naive_items: int) -> dict:
    torch.set_num_threads(2)
    items = workload(n_items)
    lm = load_model(model, device="cpu", dtype=dtype)
    with torch.inference_mode():  # page the (memory-mapped) weights in, so `base` includes the model
        lm.model(input_ids=torch.tensor([[1, 2, 3]]))
    base = rss_gib()
    start = time.perf_counter()
    if method == "engine":
        engine.score_items(lm, items, progress=False, use_cache=False)
        scale = 1.0
    elif method == "naive":
        naive_score_items(lm, items[:naive_items])
        scale = n_items / naive_items
    else:
        floor(lm, items)
        scale = 1.0
    seconds = (time.perf_counter() - start) * scale
    return {"method": method, "dtype": dtype, "seconds": seconds, "peak_gib_above_model": rss_gib() - base,
            "model_gib": sum(p.numel() * p.element_size() for p in lm.model.parameters()) / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--naive-items", type=int, default=8, help="items the naive scorer runs (scaled to --items)")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        method, dtype = args.only.split(":")
        print(json.dumps(measure(method, args.model, dtype, args.items, args.naive_items)))
        return
    results = []
    for dtype in args.dtypes.split(","):
        for method in ("engine", "floor") + (("naive",) if dtype == "float32" else ()):
            out = subprocess.run([sys.executable, __file__, "--only", f"{method}:{dtype}", "--model", args.model,
                                  "--items", str(args.items), "--naive-items", str(args.naive_items)],
                                 capture_output=True, text=True, check=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = results[-1]
            print(f"{dtype:9s} {method:7s} {r['seconds']:8.1f} s   peak above model {r['peak_gib_above_model']:.2f} GiB"
                  f" (model {r['model_gib']:.2f} GiB)", flush=True)
    by = {(r["method"], r["dtype"]): r["seconds"] for r in results}
    print(f"\n{args.items} items, {args.model}, {torch.get_num_threads()} threads")
    for dtype in args.dtypes.split(","):
        ratio = by[("engine", dtype)] / by[("floor", dtype)]
        print(f"{dtype}: engine / floor = {ratio:.2f}x", end="")
        if ("naive", dtype) in by:
            print(f", naive / engine = {by[('naive', dtype)] / by[('engine', dtype)]:.1f}x", end="")
        print()


if __name__ == "__main__":
    main()
