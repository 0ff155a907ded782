"""Linear probes at every layer at once: multinomial logistic regression, cross-validated.

All layers are fitted together as one batched problem (weights [L+1, d, C]) by L-BFGS on the sum
of the per-layer losses; the layers share no parameter, so the joint optimum is every layer's own
optimum. The objective is scikit-learn's LogisticRegression(C) on standardised features:
sum of cross-entropies + ||W||^2 / (2C), bias unpenalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from layerprobe.results import wilson_interval

ArrayLike = np.ndarray | torch.Tensor


def _as_tensor(features: ArrayLike) -> torch.Tensor:
    tensor = torch.as_tensor(features).float()
    if tensor.dim() != 3:
        raise ValueError(f"features must be [layers, items, dim], got shape {tuple(tensor.shape)}")
    return tensor


@dataclass
class LinearProbes:
    """One fitted multinomial probe per layer (with the training folds' standardisation)."""

    weight: torch.Tensor  # [L+1, d, C]
    bias: torch.Tensor  # [L+1, 1, C]
    mean: torch.Tensor  # [L+1, 1, d]
    scale: torch.Tensor  # [L+1, 1, d]
    classes: np.ndarray

    def logits(self, features: ArrayLike) -> torch.Tensor:
        x = (_as_tensor(features) - self.mean) / self.scale
        return torch.baddbmm(self.bias, x, self.weight)

    def predict_proba(self, features: ArrayLike) -> np.ndarray:
        """[L+1, M, C] class probabilities (classes in `self.classes` order)."""
        return torch.softmax(self.logits(features), dim=-1).numpy()

    def predict(self, features: ArrayLike) -> np.ndarray:
        """[L+1, M] predicted labels."""
        return self.classes[self.logits(features).argmax(-1).numpy()]


def fit_probes(features: ArrayLike, labels: ArrayLike, C: float = 1.0, max_iter: int = 150) -> LinearProbes:
    """Fit one L2-regularised multinomial logistic regression per layer, all layers in one solve."""
    x = _as_tensor(features)
    classes, y = np.unique(np.asarray(labels), return_inverse=True)
    if len(classes) < 2:
        raise ValueError("a probe needs at least two classes among the labels")
    n_layers_plus, n, dim = x.shape
    mean = x.mean(dim=1, keepdim=True)
    scale = x.std(dim=1, keepdim=True).clamp_min(1e-6)
    x = (x - mean) / scale
    target = torch.as_tensor(y).long()
    weight = torch.zeros(n_layers_plus, dim, len(classes), requires_grad=True)
    bias = torch.zeros(n_layers_plus, 1, len(classes), requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-5, tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = torch.baddbmm(bias, x, weight)  # [L+1, n, C]
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, len(classes)), target.repeat(n_layers_plus),
                                               reduction="sum")
        # Divided by n for conditioning; the optimum is unchanged.
        loss = (ce + (weight ** 2).sum() / (2 * C)) / n
        loss.backward()
        return loss

    optimizer.step(closure)
    return LinearProbes(weight.detach(), bias.detach(), mean, scale, classes)


def fold_ids(n: int, folds: int, seed: int, groups: ArrayLike | None = None) -> np.ndarray:
    """Fold of each sample; samples of one group (e.g. the candidates of one item) share a fold."""
    rng = np.random.default_rng(seed)
    if groups is None:
        groups = np.arange(n)
    unique, inverse = np.unique(np.asarray(groups), return_inverse=True)
    if len(unique) < folds:
        raise ValueError(f"{len(unique)} groups cannot fill {folds} folds")
    group_fold = np.empty(len(unique), dtype=int)
    group_fold[rng.permutation(len(unique))] = np.arange(len(unique)) % folds
    return group_fold[inverse]


@dataclass
class ProbeResult:
    """Cross-validated accuracy per fold and layer, for the real labels and for shuffled ones."""

    accuracy: np.ndarray  # [folds, L+1]
    control: np.ndarray | None  # [folds, L+1], shuffled-label baseline
    correct: np.ndarray  # [L+1, N] out-of-fold correctness of each sample
    control_correct: np.ndarray | None

    def mean(self) -> np.ndarray:
        return self.correct.mean(axis=1)

    def std(self) -> np.ndarray:
        return self.accuracy.std(axis=0)

    def rows(self, *, model: str, task: str, subtask: str = "", language: str = "", method: str = "probe",
             metric: str = "accuracy") -> list[dict[str, object]]:
        """Schema rows: pooled out-of-fold accuracy with a Wilson interval, the fold spread in `std`."""
        rows = []
        sets = [(metric, self.correct, self.accuracy)]
        if self.control is not None:
            sets.append(("control", self.control_correct, self.control))
        for name, correct, per_fold in sets:
            n = correct.shape[1]
            low, high = wilson_interval(correct.sum(axis=1), n)
            for layer in range(correct.shape[0]):
                rows.append(dict(model=model, task=task, subtask=subtask, language=language, method=method,
                                 layer=layer, n_layers=correct.shape[0] - 1, metric=name,
                                 value=float(correct[layer].mean()), n_items=n, ci_low=float(low[layer]),
                                 ci_high=float(high[layer]), std=float(per_fold[:, layer].std())))
        return rows


def _cross_validated_correct(x: torch.Tensor, labels: np.ndarray, fold: np.ndarray, folds: int,
                             C: float) -> tuple[np.ndarray, np.ndarray]:
    correct = np.zeros((x.shape[0], len(labels)), dtype=bool)
    accuracy = np.zeros((folds, x.shape[0]))
    for k in range(folds):
        test = fold == k
        probes = fit_probes(x[:, ~test], labels[~test], C=C)
        hit = probes.predict(x[:, test]) == labels[test]
        correct[:, test] = hit
        accuracy[k] = hit.mean(axis=1)
    return correct, accuracy


def cross_validate(features: ArrayLike, labels: ArrayLike, folds: int = 5, seed: int = 0, control: bool = True,
                   groups: ArrayLike | None = None, C: float = 1.0) -> ProbeResult:
    """k-fold accuracy of a probe per layer, plus a control with labels shuffled (same folds, seed)."""
    x = _as_tensor(features)
    labels = np.asarray(labels)
    fold = fold_ids(len(labels), folds, seed, groups)
    correct, accuracy = _cross_validated_correct(x, labels, fold, folds, C)
    control_correct = control_accuracy = None
    if control:
        shuffled = np.random.default_rng(seed + 1).permutation(labels)
        control_correct, control_accuracy = _cross_validated_correct(x, shuffled, fold, folds, C)
    return ProbeResult(accuracy, control_accuracy, correct, control_correct)
