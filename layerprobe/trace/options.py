"""Option-constrained tasks (the option tokens are the only candidates): when the correct option first
tops the options (enter) and from which layer on it stays there (settle), and where the options stand
in the full vocabulary meanwhile (the "shortlist": are all of them among the top k tokens before the
model picks one?).

The items: real MMLU questions as in the paper (the options "A. ..." to "D. ..." in the prompt after
`MMLU_SHOTS` solved questions of the same subject, then "Answer:"; the options are the letter tokens
" A" ... " D"), and the project's few-shot sentiment and entailment.

Letters: the demonstrations end in "Answer: A", which a BPE tokenizer such as SmolLM2's cuts into
"Answer", ":", " A", so the letter the model continues with is the token " A" (with its space), not
"A"; the option tokens are " A" ... " D" and must each be one token (one-line error otherwise).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from layerprobe.errors import LayerprobeError
from layerprobe.lens import Lens
from layerprobe.models import LoadedModel
from layerprobe.results import layer_rows
from layerprobe.tasks.io import Rows
from layerprobe.tasks.mmlu import mmlu_items
from layerprobe.trace.readout import first_layer, median_rows, read_positions, settle_layer, summary_row


@dataclass
class OptionItem:
    """A prompt whose next token is one of a few single-token options."""

    prompt: str
    options: list[str]  # with their leading space, each one token
    correct: int


@dataclass
class OptionTask:
    """One option task's items and where they came from (`data`: a file, a hub id or "built-in")."""

    items: list[OptionItem]
    data: str = "built-in"
    skipped_rows: int = 0


MMLU_SHOTS = 3
SHORTLIST_K = (4, 10, 100)


def mmlu_option_task(limit: int, seed: int = 0, source: str | Path | Rows | None = None,
                     shots: int = MMLU_SHOTS) -> OptionTask:
    """`limit` MMLU questions stratified by subject (seeded; any prefix is balanced), lettered, few-shot."""
    loaded = mmlu_items(None, seed, source, style="letters", shots=shots, limit=limit)
    items = [OptionItem(item.prompt, item.candidates, item.correct[0]) for item in loaded]
    return OptionTask(items, loaded.source, loaded.skipped_rows)


def option_token_ids(lm: LoadedModel, options: Sequence[str]) -> list[int]:
    ids = [lm.tokenizer(option, add_special_tokens=False)["input_ids"] for option in options]
    bad = [option for option, tokens in zip(options, ids) if len(tokens) != 1]
    if bad:
        raise LayerprobeError(f"option {bad[0]!r} is not a single token for {lm.name}")
    return [tokens[0] for tokens in ids]


@dataclass
class OptionTrace:
    """Per item and layer: log-probs of the options [N, L+1, K], their full-vocabulary ranks [N, L+1, K]
    (NaN for an option the item lacks) and the correct option's index [N]."""

    logprob: np.ndarray
    correct: np.ndarray
    rank: np.ndarray | None = None


def trace_options(lm: LoadedModel, lenses: dict[str, Lens], items: Sequence[OptionItem], progress: bool = True,
                  desc: str = "options") -> dict[str, OptionTrace]:
    """Option log-probs at the last prompt position, at every layer, for each lens.

    Items may have fewer options than others (a lettered question with three choices) as long as
    their options are a prefix of the longest list; options an item lacks get log-prob -inf.
    """
    options = max((item.options for item in items), key=len)
    if any(item.options != options[: len(item.options)] for item in items):
        raise LayerprobeError(f"{desc}: the items' options are not prefixes of one list {options}")
    option_ids = option_token_ids(lm, options)
    sequences = [lm.tokenizer(item.prompt)["input_ids"] for item in items]
    readouts, _ = read_positions(lm, lenses, sequences, [[len(s) - 1] for s in sequences], options=option_ids,
                                 progress=progress, desc=desc)
    correct = np.array([item.correct for item in items])
    traces = {}
    for name, readout in readouts.items():
        logprob, rank = readout.option_logprob.copy(), readout.option_rank.astype(float)
        for number, item in enumerate(items):
            logprob[number, :, len(item.options):] = -np.inf
            rank[number, :, len(item.options):] = np.nan
        traces[name] = OptionTrace(logprob, correct, rank)
    return traces


def option_rows(trace: OptionTrace, *, model: str, task: str, subtask: str, method: str,
                seed: int = 0) -> list[dict[str, object]]:
    """correct_top_option and correct_option_rank per layer; enter_layer and settle_layer (items right at the end)."""
    logprob, correct = trace.logprob, trace.correct
    unit = dict(model=model, task=task, subtask=subtask, language="en", method=method)
    correct_score = np.take_along_axis(logprob, correct[:, None, None], axis=2)  # [N, L+1, 1]
    higher = (logprob > correct_score).sum(axis=2)  # options strictly above the correct one
    ties = (logprob == correct_score).sum(axis=2) - 1
    on_top = (higher == 0) & (ties == 0)  # strictly beats every other option
    rows = layer_rows(on_top.T, metric="correct_top_option", **unit)
    rows += layer_rows((1 + higher).T.astype(float), metric="correct_option_rank", interval="bootstrap", seed=seed, **unit)
    right = on_top[:, -1]
    n_layers = logprob.shape[1] - 1
    if right.any():
        rows.append(summary_row(first_layer(on_top[right]), "enter_layer", n_layers, seed, **unit))
        rows.append(summary_row(settle_layer(on_top[right]), "settle_layer", n_layers, seed, **unit))
    return rows


def shortlist_rows(trace: OptionTrace, *, model: str, task: str, subtask: str, method: str,
                   seed: int = 0) -> list[dict[str, object]]:
    """Per layer, where an item's options stand among all vocabulary tokens: the best-ranked option's
    rank (best_option_median_rank, best_option_mean_rank), the share whose top-1 token is an option
    (top1_is_option), and the share with every option in the top k (options_in_topk, one row per k)."""
    unit = dict(model=model, task=task, subtask=subtask, language="en", method=method)
    best, worst = np.nanmin(trace.rank, axis=2), np.nanmax(trace.rank, axis=2)  # [N, L+1]
    rows = median_rows(best, seed, metric="best_option_median_rank", **unit)
    rows += layer_rows(best.T, metric="best_option_mean_rank", interval="bootstrap", seed=seed, **unit)
    rows += layer_rows((best == 1).T, metric="top1_is_option", **unit)
    for k in SHORTLIST_K:
        rows += layer_rows((worst <= k).T, metric="options_in_topk", k=k, **unit)
    return rows


_SENTIMENT_SUBJECTS = ["the food", "the service", "the movie", "the hotel room", "the concert", "the book",
                       "the new phone", "the museum tour", "the coffee", "the train ride"]
_SENTIMENT_WORDS = {
    " positive": ["wonderful", "excellent", "delightful", "superb", "lovely", "fantastic"],
    " negative": ["awful", "terrible", "dreadful", "disappointing", "boring", "horrible"],
}
_SENTIMENT_TEMPLATES = ["{S} was {A}.", "Honestly, {S} was {A}.", "I thought {S} was {A}.", "All in all, {S} was {A}."]


def sentiment_items(limit: int | None = None, seed: int = 0, shots: int = 4) -> list[OptionItem]:
    """Few-shot review sentiment with the options " positive" / " negative", balanced demonstrations."""
    rng = random.Random(seed)
    options = list(_SENTIMENT_WORDS)
    pool = [(template.format(S=subject, A=word).capitalize(), label)
            for label, words in _SENTIMENT_WORDS.items() for word in words
            for subject in _SENTIMENT_SUBJECTS for template in _SENTIMENT_TEMPLATES]
    rng.shuffle(pool)
    items = []
    for review, label in pool[: limit if limit is not None else 200]:
        demos = [rng.choice([p for p in pool if p[1] == options[n % 2] and p[0] != review]) for n in range(shots)]
        rng.shuffle(demos)
        context = "".join(f"Review: {text}\nSentiment:{answer}\n\n" for text, answer in demos)
        items.append(OptionItem(context + f"Review: {review}\nSentiment:", options, options.index(label)))
    return items


_NAMES = ["Anna", "Ben", "Carla", "David", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas"]
_PLACES = ["Paris", "Lisbon", "Oslo", "Cairo", "Lima", "Tokyo", "Boston", "Vienna"]
_THINGS = ["a bicycle", "a lamp", "a violin", "a painting", "a tent", "a camera"]
# (premise, hypothesis that follows, hypothesis that contradicts)
_ENTAILMENT_TEMPLATES = [
    ("{N} bought {T} in {P}.", "{N} was in {P}.", "{N} has never been to {P}."),
    ("{N} sold {T} in {P}.", "{N} no longer has {T}.", "{N} kept {T}."),
    ("{N} flew from {P} to {Q}.", "{N} travelled to {Q}.", "{N} stayed in {P} the whole time."),
    ("{N} lives in {P} and works in {P}.", "{N} works in {P}.", "{N} works in {Q}."),
    ("{N} lost {T} on the way to {P}.", "{N} did not have {T} in {P}.", "{N} had {T} in {P}."),
]


def entailment_items(limit: int | None = None, seed: int = 0, shots: int = 4) -> list[OptionItem]:
    """Few-shot premise/hypothesis entailment with the options " yes" / " no", balanced demonstrations."""
    rng = random.Random(seed)
    options = [" yes", " no"]

    def example() -> tuple[str, str, int]:
        premise, follows, contradicts = rng.choice(_ENTAILMENT_TEMPLATES)
        place, other = rng.sample(_PLACES, 2)
        fill = dict(N=rng.choice(_NAMES), T=rng.choice(_THINGS), P=place, Q=other)
        label = rng.randrange(2)
        return premise.format(**fill), (follows if label == 0 else contradicts).format(**fill), label

    items = []
    for _ in range(limit if limit is not None else 200):
        premise, hypothesis, label = example()
        demos = []
        while len(demos) < shots:
            demo = example()
            if demo[2] == len(demos) % 2:
                demos.append(demo)
        rng.shuffle(demos)
        context = "".join(f"Premise: {p}\nHypothesis: {h}\nDoes the premise imply the hypothesis?{options[y]}\n\n"
                          for p, h, y in demos)
        prompt = context + f"Premise: {premise}\nHypothesis: {hypothesis}\nDoes the premise imply the hypothesis?"
        items.append(OptionItem(prompt, options, label))
    return items


def default_option_tasks(limit: int, seed: int, mmlu_source: str | Path | Rows | None = None,
                         shots: int = MMLU_SHOTS) -> dict[str, OptionTask]:
    """MMLU (`limit` questions; the offline copy unless `mmlu_source`) and the project's sentiment and entailment."""
    return {"mmlu": mmlu_option_task(limit, seed, mmlu_source, shots),
            "sentiment": OptionTask(sentiment_items(limit, seed)),
            "entailment": OptionTask(entailment_items(limit, seed))}
