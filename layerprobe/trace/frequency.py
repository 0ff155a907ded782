"""Frequency buckets and flips: the share of per-layer top-1 tokens in frequency buckets of the corpus,
and the share of positions whose top-1 at a layer differs from the final top-1."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layerprobe import parallel
from layerprobe.models import LoadedModel
from layerprobe.results import layer_rows
from layerprobe.trace.readout import MAX_CONTEXT_TOKENS, MIN_CONTEXT_TOKENS, Readout

BUCKETS = (("top10", 10), ("11-100", 100), ("101-1000", 1000), ("rest", None))


def token_frequency_ranks(tokenizer: object, paragraphs: Sequence[str], vocab_size: int) -> np.ndarray:
    """Frequency rank (1 = most frequent) of every vocabulary id on the paragraphs; unseen ids rank last.

    Ties in count are broken by the smaller token id, so the ranking is deterministic. Under a
    launcher every process counts its share of the paragraphs (`layerprobe.parallel`).
    """
    mine = parallel.share(paragraphs)
    encoded = tokenizer(mine, add_special_tokens=False)["input_ids"] if mine else []
    all_ids = np.fromiter((i for ids in encoded for i in ids), dtype=np.int64)
    counts = sum(parallel.gather([np.bincount(all_ids, minlength=vocab_size)[:vocab_size]]))
    order = np.lexsort((np.arange(vocab_size), -counts))
    ranks = np.empty(vocab_size, dtype=np.int64)
    ranks[order] = np.arange(1, vocab_size + 1)
    return ranks


def bucket_of(frequency_ranks: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Bucket names of token ids: top10, 11-100, 101-1000, rest."""
    ranks = frequency_ranks[np.asarray(tokens)]
    names = np.full(ranks.shape, BUCKETS[-1][0], dtype=object)
    for name, bound in reversed(BUCKETS[:-1]):
        names[ranks <= bound] = name
    return names


def corpus_positions(lm: LoadedModel, paragraphs: Sequence[str], n_positions: int, per_paragraph: int = 16,
                     seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    """Random positions in random held-out paragraphs (seeded), `per_paragraph` at most each."""
    rng = np.random.default_rng(seed)
    sequences, positions, total = [], [], 0
    for index in rng.permutation(len(paragraphs)):
        if total >= n_positions:
            break
        ids = lm.tokenizer(paragraphs[index])["input_ids"][:MAX_CONTEXT_TOKENS]
        eligible = np.arange(MIN_CONTEXT_TOKENS - 1, len(ids))
        take = min(per_paragraph, len(eligible), n_positions - total)
        if take <= 0:
            continue
        sequences.append(ids)
        positions.append(sorted(rng.choice(eligible, size=take, replace=False).tolist()))
        total += take
    return sequences, positions


def frequency_rows(readout: Readout, frequency_ranks: np.ndarray, *, model: str, method: str) -> list[dict[str, object]]:
    """top1_share per bucket and layer: the share of per-layer top-1 tokens in each frequency bucket."""
    buckets = bucket_of(frequency_ranks, readout.top1)  # [N, L+1]
    rows = []
    for name, _ in BUCKETS:
        rows += layer_rows((buckets == name).T, metric="top1_share", model=model, task="frequency",
                           subtask=name, language="en", method=method)
    return rows


def flip_rows(readout: Readout, frequency_ranks: np.ndarray, *, model: str, method: str) -> list[dict[str, object]]:
    """flip_rate per layer: share of positions whose top-1 differs from the final top-1, overall and per bucket."""
    flipped = readout.top1 != readout.target[:, None]  # [N, L+1]
    final_bucket = bucket_of(frequency_ranks, readout.target)
    rows = layer_rows(flipped.T, metric="flip_rate", model=model, task="flips", subtask="all", language="en", method=method)
    for name, _ in BUCKETS:
        mask = final_bucket == name
        if mask.any():
            rows += layer_rows(flipped[mask].T, metric="flip_rate", model=model, task="flips", subtask=name,
                               language="en", method=method)
    return rows
