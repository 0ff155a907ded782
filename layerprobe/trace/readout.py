"""The core of every trace: ranks of the final top-1 token, first / earliest / settle layers, what a lens
reads at every layer (`Readout`, `read_states`, `read_positions`) and the rank rows of the results CSV.

The final layer decides which positions are kept before any other layer is unembedded, and the lens
runs in small chunks of positions, so memory never holds [L+1, T, V] for a whole sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from layerprobe import parallel
from layerprobe.engine import hidden_states_at
from layerprobe.lens import Lens
from layerprobe.models import LoadedModel
from layerprobe.results import bootstrap_interval, layer_rows

K_GRID = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
LENS_CHUNK = 8
"""Positions unembedded at once: L+1 x 8 x V fp32 logits (about 50 MB for SmolLM2)."""
SEQUENCE_GROUP = 8
"""Sequences whose states are held at once."""
MAX_CONTEXT_TOKENS = 128
MIN_CONTEXT_TOKENS = 4
"""Corpus paragraphs are read within their first MAX_CONTEXT_TOKENS tokens, after at least MIN_CONTEXT_TOKENS of context."""


# --------------------------------------------------------------------------- ranks and layers


def token_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 + the number of entries with a strictly higher score than the target's: [...] for scores [..., V]."""
    target_scores = scores.gather(-1, targets.unsqueeze(-1))
    return 1 + (scores > target_scores).sum(-1)


def first_layer(condition: np.ndarray) -> np.ndarray:
    """First layer at which a condition holds, per row of [N, L+1]; L+1 where it never does."""
    condition = np.asarray(condition, dtype=bool)
    return np.where(condition.any(axis=1), condition.argmax(axis=1), condition.shape[1])


def earliest_layer(ranks: np.ndarray, k: int) -> np.ndarray:
    """First layer at which the rank is <= k, per row of ranks [N, L+1]; L+1 where it never is."""
    return first_layer(np.asarray(ranks) <= k)


def settle_layer(condition: np.ndarray) -> np.ndarray:
    """First layer from which a condition holds at every later layer, per row of [N, L+1]; L+1 if not at the last."""
    condition = np.asarray(condition, dtype=bool)
    # Reversed running "and": holds from l on iff it holds at every layer >= l.
    holds_after = np.flip(np.logical_and.accumulate(np.flip(condition, axis=1), axis=1), axis=1)
    return first_layer(holds_after)


@dataclass
class Readout:
    """What one lens reads at N positions and every layer."""

    target: np.ndarray  # [N] the final top-1 token
    rank: np.ndarray  # [N, L+1] rank of the target
    prob: np.ndarray  # [N, L+1] probability of the target
    top1: np.ndarray  # [N, L+1] the top-1 token
    option_logprob: np.ndarray | None = None  # [N, L+1, K] log-probs of the option tokens
    option_rank: np.ndarray | None = None  # [N, L+1, K] full-vocabulary ranks of the option tokens

    def subset(self, index: np.ndarray) -> "Readout":
        options = None if self.option_logprob is None else self.option_logprob[index]
        ranks = None if self.option_rank is None else self.option_rank[index]
        return Readout(self.target[index], self.rank[index], self.prob[index], self.top1[index], options, ranks)


def _concat(readouts: list[Readout], n_layers: int, n_options: int | None) -> Readout:
    if not readouts:
        empty = np.zeros((0, n_layers + 1))
        options = None if n_options is None else np.zeros((0, n_layers + 1, n_options))
        ranks = None if options is None else options.astype(np.int64)
        return Readout(np.zeros(0, dtype=np.int64), empty.astype(np.int64), empty, empty.astype(np.int64), options, ranks)
    names = ("target", "rank", "prob", "top1") + (() if readouts[0].option_logprob is None else ("option_logprob", "option_rank"))
    return Readout(**{name: np.concatenate([getattr(r, name) for r in readouts]) for name in names})


def read_states(lens: Lens, states: torch.Tensor, options: torch.Tensor | None = None,
                chunk: int = LENS_CHUNK) -> Readout:
    """Lens readout at every layer for states [L+1, P, d]; the target is each position's final top-1."""
    parts = []
    with torch.no_grad():
        for start in range(0, states.shape[1], chunk):
            logits = lens.all_layers(states[:, start:start + chunk])  # [L+1, c, V]
            target = logits[-1].argmax(-1)
            expanded = target.expand(logits.shape[0], -1)
            logprobs = torch.log_softmax(logits, dim=-1)
            option_logprob = option_rank = None
            if options is not None:
                option_logprob = logprobs[..., options].permute(1, 0, 2).numpy()
                higher = logits.unsqueeze(-2) > logits[..., options].unsqueeze(-1)  # [L+1, c, K, V]
                option_rank = (1 + higher.sum(-1)).permute(1, 0, 2).numpy()
            parts.append(Readout(
                target=target.numpy(),
                rank=token_ranks(logits, expanded).T.numpy(),
                prob=logprobs.gather(-1, expanded.unsqueeze(-1)).squeeze(-1).exp().T.numpy(),
                top1=logits.argmax(-1).T.numpy(),
                option_logprob=option_logprob,
                option_rank=option_rank,
            ))
    return _concat(parts, states.shape[0] - 1, None if options is None else len(options))


Select = Callable[[int, np.ndarray], np.ndarray]
"""(sequence index, final top-1 at its positions) -> which of those positions to keep."""


def read_positions(lm: LoadedModel, lenses: dict[str, Lens], sequences: Sequence[Sequence[int]],
                   positions: Sequence[Sequence[int]], select: Select | None = None,
                   options: Sequence[int] | None = None, enough: Callable[[], bool] | None = None,
                   progress: bool = True, desc: str | None = None) -> tuple[dict[str, Readout], list[tuple[int, int]]]:
    """Readouts of every lens at the kept positions, and which (sequence, position index) each row is.

    One engine forward per sequence serves all lenses. The final layer (the same for every lens)
    decides what is kept before the other layers are unembedded. `enough()` is asked between groups
    of sequences: once it says so, the remaining sequences are not run.

    Under a launcher (`layerprobe.parallel`) every process must call this with the same arguments:
    each runs whole groups (as many groups at a time as processes), the final-layer top-1 of every
    sequence is shared, every process asks `select` and `enough` the same questions in the order a
    single process asks them, and each unembeds the positions kept in its own groups.
    """
    option_ids = None if options is None else torch.as_tensor(list(options))
    any_lens = next(iter(lenses.values()))
    parts: dict[str, list[Readout]] = {name: [] for name in lenses}
    kept: list[tuple[int, int]] = []
    groups = [range(start, min(start + SEQUENCE_GROUP, len(sequences))) for start in range(0, len(sequences), SEQUENCE_GROUP)]
    show = progress and parallel.is_main()
    for wave_start in range(0, len(groups), parallel.count()):
        if enough is not None and enough():
            break
        wave = groups[wave_start:wave_start + parallel.count()]
        states: dict[int, torch.Tensor] = {}
        for group in parallel.share(wave):
            group_states = hidden_states_at(lm, [sequences[i] for i in group], [positions[i] for i in group],
                                            progress=show, desc=desc)
            states.update(zip(group, group_states))
        with torch.no_grad():
            final_top1 = dict(parallel.gather([(i, any_lens(s[-1], lm.n_layers).argmax(-1).numpy()) for i, s in states.items()]))
        keep: dict[int, np.ndarray] = {}
        for number, group in enumerate(wave):
            if number and enough is not None and enough():
                break  # where a single process would have stopped; the next wave does not start either
            for i in group:
                keep[i] = np.ones(len(final_top1[i]), dtype=bool) if select is None else np.asarray(select(i, final_top1[i]), dtype=bool)
        with torch.no_grad():
            read = dict(parallel.gather([
                (i, {name: read_states(lens, states[i][:, torch.as_tensor(np.flatnonzero(keep[i]))], option_ids)
                     for name, lens in lenses.items()})
                for i in states if i in keep and keep[i].any()]))
        for i in sorted(read):
            for name in lenses:
                parts[name].append(read[i][name])
            kept += [(i, int(p)) for p in np.flatnonzero(keep[i])]
    n_options = None if options is None else len(options)
    return {name: _concat(readouts, lm.n_layers, n_options) for name, readouts in parts.items()}, kept


@dataclass
class CutItems:
    """Sequences with the positions to read and, per position, the token that must be the final top-1."""

    sequences: list[list[int]]
    positions: list[list[int]]
    expected: list[list[int]]
    labels: list[list[str]]


def readouts_by_label(readouts: dict[str, Readout], kept: list[tuple[int, int]],
                      items: CutItems) -> dict[str, dict[str, Readout]]:
    """Each lens's readout split by the label of the kept cuts (rows in `kept` order): lens -> label -> readout."""
    labels = np.array([items.labels[i][p] for i, p in kept])
    return {name: {label: readout.subset(np.flatnonzero(labels == label)) for label in sorted(set(labels))}
            for name, readout in readouts.items()}


# --------------------------------------------------------------------------- result rows


def median_rows(ranks: np.ndarray, seed: int, n_boot: int = 1000, metric: str = "median_rank",
                **unit: object) -> list[dict[str, object]]:
    """The median of ranks [N, L+1] per layer (metric `metric`), with a 95% percentile-bootstrap interval."""
    n_items, n_layers_plus = ranks.shape
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, n_items, size=(n_boot, n_items))
    medians = np.median(ranks[samples], axis=1)  # [n_boot, L+1]
    low, high = np.percentile(medians, [2.5, 97.5], axis=0)
    value = np.median(ranks, axis=0)
    return [dict(unit, layer=layer, n_layers=n_layers_plus - 1, metric=metric, value=float(value[layer]),
                 n_items=n_items, ci_low=float(low[layer]), ci_high=float(high[layer]))
            for layer in range(n_layers_plus)]


def summary_row(values: np.ndarray, metric: str, n_layers: int, seed: int, **unit: object) -> dict[str, object]:
    """One layer = -1 row: mean of per-item values with a bootstrap interval."""
    low, high = bootstrap_interval(np.asarray(values, dtype=float)[None, :], seed=seed)
    return dict(unit, layer=-1, n_layers=n_layers, metric=metric, value=float(np.mean(values)),
                n_items=len(values), ci_low=float(low[0]), ci_high=float(high[0]))


def rank_rows(readout: Readout, *, model: str, task: str, subtask: str, method: str, seed: int = 0) -> list[dict[str, object]]:
    """Per layer rank1_share, median_rank, target_prob; summary earliest_layer for every k of K_GRID."""
    if len(readout.target) == 0:
        return []
    unit = dict(model=model, task=task, subtask=subtask, language="en", method=method)
    n_layers = readout.rank.shape[1] - 1
    rows = layer_rows((readout.rank == 1).T, metric="rank1_share", **unit)
    rows += median_rows(readout.rank, seed, **unit)
    rows += layer_rows(readout.prob.T, metric="target_prob", interval="bootstrap", seed=seed, **unit)
    for k in K_GRID:
        rows.append(dict(summary_row(earliest_layer(readout.rank, k), "earliest_layer", n_layers, seed, **unit), k=k))
    return rows
