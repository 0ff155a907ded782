"""All-layer probes (one batched solve) against scikit-learn fitted layer by layer, measured in one run (not a test).

    OMP_NUM_THREADS=1 python bench/bench_probes.py                  # d=576, 31 layers, n=2000+500, 2 and 4 classes
    OMP_NUM_THREADS=1 python bench/bench_probes.py --n 5000 --classes 2

Synthetic Gaussian states with a class signal that grows with depth (as in tests/test_probes.py).
For each setting it prints the CPU seconds (process time: other jobs' load counts less than in wall
time) of `fit_probes` on all layers at once and of `LogisticRegression(C=1)` on `StandardScaler`
features, one layer after the other, with scikit-learn's default tolerance and with tol=1e-8; the
ratio; the mean held-out accuracy of each; and the largest probability difference from ours.
Ours also runs in float32 at tol 1e-6 (half the memory traffic; float32 rounding cannot reach 1e-8).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from layerprobe.probes import fit_probes  # noqa: E402


def layered_states(n: int, classes: int, dim: int, layers: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """[layers, n, dim] float32 states whose class signal grows linearly with the layer, and labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, dim)) * rng.uniform(0.5, 2.0, dim)
    noise_scale = np.linspace(0.5, 3.0, dim)
    states = np.stack([rng.normal(size=(n, dim)) * noise_scale + 0.1 * layer / (layers - 1) * centres[labels]
                       for layer in range(layers)])
    return states.astype(np.float32), labels


def sklearn_per_layer(train: np.ndarray, labels: np.ndarray, test: np.ndarray, **options: object
                      ) -> tuple[float, np.ndarray, np.ndarray]:
    """CPU seconds, [layers, M] predictions and [layers, M, C] probabilities of one fit per layer."""
    start = time.process_time()
    predictions, probabilities = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for layer in range(len(train)):
            scaler = StandardScaler().fit(train[layer])
            model = LogisticRegression(C=1.0, **options).fit(scaler.transform(train[layer]), labels)
            held = scaler.transform(test[layer])
            predictions.append(model.predict(held))
            probabilities.append(model.predict_proba(held))
    return time.process_time() - start, np.stack(predictions), np.stack(probabilities)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="training samples (held-out: a quarter more)")
    parser.add_argument("--classes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--layers", type=int, default=31)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for classes in args.classes:
        states, labels = layered_states(args.n + args.n // 4, classes, args.dim, args.layers, seed=classes)
        train, test = states[:, :args.n], states[:, args.n:]
        print(f"{classes} classes, n={args.n}, d={args.dim}, {args.layers} layers, {args.threads} thread(s)")
        for name, options in [("default: float64, tol 1e-8", {}), ("float32, tol 1e-6", dict(dtype=torch.float32, tol=1e-6))]:
            start = time.process_time()
            with warnings.catch_warnings(record=True):
                probes = fit_probes(train, labels[:args.n], **options)
            seconds = time.process_time() - start
            if not options:
                ours_seconds, ours_probability = seconds, probes.predict_proba(test)
                ours_accuracy = (probes.predict(test) == labels[args.n:]).mean(axis=1)
            accuracy = (probes.predict(test) == labels[args.n:]).mean(axis=1)
            print(f"  ours, one solve, {name}: {seconds:7.2f} CPU s, mean held-out accuracy {accuracy.mean():.4f}, "
                  f"max |p - default| {np.abs(probes.predict_proba(test) - ours_probability).max():.2e}, "
                  f"iterations per layer max {probes.n_iter.max()}, unconverged layers {int((~probes.converged).sum())}")
        for name, options in [("sklearn lbfgs default (tol 1e-4, max_iter 100)", {}),
                              ("sklearn lbfgs tol 1e-8, max_iter 5000", dict(tol=1e-8, max_iter=5000))]:
            seconds, predictions, probabilities = sklearn_per_layer(train, labels[:args.n], test, **options)
            accuracy = (predictions == labels[args.n:]).mean(axis=1)
            print(f"  {name}: {seconds:7.2f} CPU s = {seconds / ours_seconds:5.1f}x ours; mean held-out accuracy "
                  f"{accuracy.mean():.4f}, largest per-layer |accuracy - ours| {np.abs(accuracy - ours_accuracy).max():.4f}, "
                  f"max |p - ours| {np.abs(probabilities - ours_probability).max():.2e}")


if __name__ == "__main__":
    main()
