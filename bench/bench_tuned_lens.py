"""The tuned lens on a real model against the issue-13 targets: held-out KL per layer and training cost (not a test).

    python bench/bench_tuned_lens.py                         # SmolLM2, default settings, cached lens if any
    python bench/bench_tuned_lens.py --retrain --threads 2   # train now (into a temporary folder) and time it

Trains (or loads from the default cache folder, where trace_layers.py finds it) the tuned lens with the
default settings on the training part of the default corpus, and prints per layer the held-out
KL(final || lens) of the logit lens, of the least-squares start and of the trained lens, then checks:
- the tuned lens is below the logit lens at every layer < L;
- the mean over layers < L of KL(tuned) / KL(logit) is at most 1/3;
- training took at most 600 CPU seconds of this process (process time, so other jobs count less).
Exit code 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from layerprobe.corpus import corpus_paragraphs, load_corpus, split_corpus  # noqa: E402
from layerprobe.lens import TunedLens, cached_tuned_lens, default_lens_folder  # noqa: E402
from layerprobe.models import load_model  # noqa: E402

MAX_RATIO = 1 / 3
MAX_CPU_SECONDS = 600.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--corpus", default="default")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--retrain", action="store_true", help="train now into a temporary folder, ignoring the cache")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, held_out = (corpus_paragraphs(part) for part in split_corpus(load_corpus(args.corpus)))
    lm = load_model(args.model, device="cpu")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "lens" if args.retrain else default_lens_folder(
            lm.name, args.corpus, TunedLens.for_model(lm, corpus=args.corpus).config)
        config = cached_tuned_lens(lm, folder, train, held_out, corpus=args.corpus).config
    logit, start, tuned = (np.array(values) for values in (config.held_out_kl_logit, config.held_out_kl_start,
                                                           config.held_out_kl_tuned))
    print(f"\n{lm.name}: held-out KL(final || lens), {config.held_out_positions} positions; least squares then "
          f"{config.steps} {config.optimizer} steps x {config.positions_per_step} positions of {config.train_tokens} tokens")
    print("layer  logit-lens  least-squares  tuned-lens  tuned/logit")
    for layer in range(lm.n_layers + 1):
        ratio = tuned[layer] / logit[layer] if logit[layer] > 0 else float("nan")
        print(f"{layer:5d}  {logit[layer]:10.3f}  {start[layer]:13.3f}  {tuned[layer]:10.3f}  {ratio:11.3f}")
    ratios = tuned[:-1] / logit[:-1]
    below = bool(np.all(tuned[:-1] < logit[:-1]))
    print(f"tuned below logit at every layer < {lm.n_layers}: {below}")
    print(f"mean per-layer ratio KL(tuned)/KL(logit): {ratios.mean():.3f} (target <= {MAX_RATIO:.3f})")
    print(f"training: {config.train_cpu_seconds:.0f} CPU seconds in the training process (target <= {MAX_CPU_SECONDS:.0f})")
    return 0 if below and ratios.mean() <= MAX_RATIO and config.train_cpu_seconds <= MAX_CPU_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
