"""Evaluations of models trained on synthetic worlds: sampling, exact-match answers, probe datasets.

Layer states always come from `layerprobe.engine.hidden_states_at` (layer 0 = embeddings, L = last
block before the final norm), so the synthetic probes read the same states as every other study.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from layerprobe.engine import hidden_states_at
from layerprobe.models import LoadedModel
from layerprobe.synthetic import bios
from layerprobe.synthetic.cfg import Grammar, corrupt
from layerprobe.synthetic.data import Doc, cfg_ids, pad, qa_doc, split_qa_doc
from layerprobe.synthetic.vocab import Vocab


@torch.no_grad()
def sample(lm: LoadedModel, prompts: Sequence[Sequence[int]], max_new: int, seed: int, temperature: float = 1.0,
           batch_size: int = 64, desc: str = "sampling") -> list[tuple[list[int], bool]]:
    """Ancestral sampling with a KV cache: per prompt (new tokens before <eos>, whether <eos> came).
    `temperature=0` decodes greedily.

    Prompts of one batch share a length, so no padding or position ids are involved.
    """
    generator = torch.Generator(device=lm.device).manual_seed(seed)
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, prompt in enumerate(prompts):
        by_length[len(prompt)].append(i)
    results: list[tuple[list[int], bool] | None] = [None] * len(prompts)
    batches = [group[k:k + batch_size] for _, group in sorted(by_length.items()) for k in range(0, len(group), batch_size)]
    for batch in tqdm(batches, desc=desc, leave=False):
        ids = torch.tensor([list(prompts[i]) for i in batch], device=lm.device)
        output = lm.model(input_ids=ids, use_cache=True)
        new = torch.zeros((len(batch), 0), dtype=torch.long, device=lm.device)
        done = torch.zeros(len(batch), dtype=torch.bool, device=lm.device)
        for _ in range(max_new):
            logits = output.logits[:, -1].float()
            if temperature == 0:
                token = logits.argmax(-1)
            else:
                token = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=generator).squeeze(1)
            token = token.masked_fill(done, Vocab.pad_id)
            new = torch.cat([new, token[:, None]], dim=1)
            done |= token == Vocab.eos_id
            if done.all():
                break
            output = lm.model(input_ids=token[:, None], past_key_values=output.past_key_values, use_cache=True)
        for row, i in enumerate(batch):
            tokens = new[row].tolist()
            ended = Vocab.eos_id in tokens
            results[i] = (tokens[: tokens.index(Vocab.eos_id)] if ended else tokens, ended)
    return results


@torch.no_grad()
def answers_correct(lm: LoadedModel, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]],
                    batch_size: int = 64) -> np.ndarray:
    """Whether greedy decoding after each prompt writes exactly the answer and then <eos>.

    Teacher-forced: greedy output equals the answer iff the argmax is right at every answer step,
    so one forward per batch replaces token-by-token decoding.
    """
    correct = np.zeros(len(prompts), dtype=bool)
    for start in range(0, len(prompts), batch_size):
        rows = range(start, min(start + batch_size, len(prompts)))
        batch = pad([Doc(list(prompts[i]) + list(answers[i]) + [Vocab.eos_id]) for i in rows])
        predicted = lm.model(input_ids=batch.to(lm.device)).logits.argmax(-1).cpu()
        for row, i in enumerate(rows):
            first = len(prompts[i]) - 1  # the position that predicts the first answer token
            span = slice(first, first + len(answers[i]) + 1)
            correct[i] = bool((predicted[row, span] == batch[row, first + 1:first + len(answers[i]) + 2]).all())
    return correct


# --------------------------------------------------------------------------- CFG


@dataclass
class Generation:
    accepted: np.ndarray  # [n] bool: the completed string is in the grammar (and <eos> was produced)
    first_seen: np.ndarray  # [n] bool: no earlier sample is the same string (its mean is the distinct share)
    lengths: np.ndarray  # [n] tokens of each completed string (prefix included)
    strings: list[tuple]  # the completed strings


def first_occurrences(strings: Sequence[tuple]) -> np.ndarray:
    seen: set[tuple] = set()
    flags = []
    for string in strings:
        flags.append(string not in seen)
        seen.add(string)
    return np.array(flags)


def collision_support(strings: Sequence[tuple]) -> tuple[float, int]:
    """Birthday-paradox estimate of how many distinct outputs the sampler has, and the colliding pairs.

    Of n samples, n(n-1)/2 pairs collide with probability sum_s p_s^2, so pairs / collisions estimates
    1 / sum_s p_s^2: the support size of the uniform distribution that collides as often (part 1's
    diversity measure). With no collision it is the bound pairs / 1: the support is at least about that.
    """
    n = len(strings)
    collisions = sum(c * (c - 1) // 2 for c in Counter(strings).values())
    return n * (n - 1) / 2 / max(collisions, 1), collisions


def cfg_generation(lm: LoadedModel, grammar: Grammar, vocab: Vocab, n: int, cut: int, seed: int,
                   corrupted_prompt: bool = False) -> Generation:
    """Sample n completions from <bos> (cut=0) or from the first `cut` tokens of fresh grammar strings.

    With `corrupted_prompt` the model sees a corrupted prefix (`cfg.corrupt`) and its completion is
    judged after the clean prefix: whether it continues the string the corruption hid."""
    rng = np.random.default_rng([seed, cut])
    prefixes = [grammar.sample(rng).terminals[:cut] for _ in range(n)]
    shown = [corrupt(prefix, grammar.terminals, rng) for prefix in prefixes] if corrupted_prompt else prefixes
    prompts = [cfg_ids(vocab, prefix)[:-1] for prefix in shown]  # drop <eos>
    max_new = grammar.length_range()[1] + 2
    completions = sample(lm, prompts, max_new=max_new, seed=seed, desc=f"generate cut={cut}")
    strings, accepted = [], []
    for prefix, (tokens, ended) in zip(prefixes, completions):
        text = vocab.decode(tokens, skip_special=False)
        terminals = prefix + [int(t) for t in text] if all(t.isdigit() for t in text) else None
        strings.append(tuple(terminals) if terminals is not None else tuple(text))
        accepted.append(ended and terminals is not None and grammar.accepts(terminals))
    return Generation(np.array(accepted), first_occurrences(strings), np.array([len(s) for s in strings]), strings)


@torch.no_grad()
def attention_maps(lm: LoadedModel, sequences: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """Attention probabilities [L, H, T, T] of each sequence (eager attention: sdpa returns none)."""
    model = lm.model
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        return [torch.stack(model(input_ids=torch.tensor([list(s)], device=lm.device), output_attentions=True)
                            .attentions)[:, 0].float().cpu() for s in sequences]
    finally:
        model.set_attn_implementation(previous)


def attention_by_distance(maps: Sequence[torch.Tensor], max_distance: int) -> np.ndarray:
    """[L, H, max_distance + 1]: mean attention a query pays to the key `d` tokens back, over every
    query that has one (nan where none does)."""
    n_layers, n_heads = maps[0].shape[:2]
    sums = torch.zeros(n_layers, n_heads, max_distance + 1, dtype=torch.float64)
    counts = torch.zeros(max_distance + 1, dtype=torch.float64)
    for weights in maps:
        length = weights.shape[-1]
        for d in range(min(max_distance, length - 1) + 1):
            sums[:, :, d] += torch.diagonal(weights, offset=-d, dim1=-2, dim2=-1).double().sum(-1)
            counts[d] += length - d
    return (sums / counts).numpy()


def boundary_attention(maps: Sequence[torch.Tensor], span_ends: Sequence[np.ndarray], levels: Sequence[int],
                       profile: np.ndarray) -> np.ndarray:
    """[L, H, len(levels)]: attention from each terminal to the most adjacent earlier end of a level-k
    span (where its level-k ancestor's span, or an earlier one, begins) in excess of the mean attention
    at that distance (`profile`, from `attention_by_distance`), averaged over the terminals that have one.

    maps[i] covers `<bos> terminals` of string i, so terminal j sits at token j + 1; span_ends[i] is
    its [D, n] span-end table (`Sample.span_end`).
    """
    n_layers, n_heads = maps[0].shape[:2]
    sums = np.zeros((n_layers, n_heads, len(levels)))
    counts = np.zeros(len(levels))
    for weights, ends in zip(maps, span_ends):
        for column, level in enumerate(levels):
            queries, keys, last = [], [], None
            for j in range(ends.shape[1]):
                if last is not None:
                    queries.append(j + 1)
                    keys.append(last + 1)
                if ends[level, j]:
                    last = j
            if not queries:
                continue
            q, k = np.array(queries), np.array(keys)
            paid = weights[:, :, q, k].double().numpy()  # [L, H, m]
            sums[:, :, column] += (paid - profile[:, :, q - k]).sum(-1)
            counts[column] += len(q)
    return sums / np.maximum(counts, 1)


@dataclass
class ProbeSet:
    features: torch.Tensor  # [L+1, N, d]
    labels: dict[str, np.ndarray]  # label name -> [N]
    groups: np.ndarray  # [N] which sequence each row comes from (folds keep a sequence together)


def cfg_probe_set(lm: LoadedModel, grammar: Grammar, vocab: Vocab, n_strings: int, per_string: int,
                  seed: int) -> ProbeSet:
    """States at random terminal positions of fresh strings, with the ancestor and span-end labels
    of every level below the root (level 0 is always the root)."""
    rng = np.random.default_rng([seed, 7])
    samples = [grammar.sample(rng) for _ in range(n_strings)]
    picks = [np.sort(rng.choice(len(s.terminals), size=min(per_string, len(s.terminals)), replace=False))
             for s in samples]
    sequences = [cfg_ids(vocab, s.terminals) for s in samples]
    states = hidden_states_at(lm, sequences, [[int(p) + 1 for p in pick] for pick in picks], desc="cfg states")
    labels = {}
    for level in range(1, grammar.depth):
        symbols = np.concatenate([s.ancestors[level, pick] for s, pick in zip(samples, picks)])
        labels[f"ancestor/level{level}"] = np.searchsorted(grammar.levels[level], symbols)
        labels[f"span_end/level{level}"] = np.concatenate([s.span_end[level, pick] for s, pick in zip(samples, picks)]).astype(int)
    groups = np.concatenate([[i] * len(pick) for i, pick in enumerate(picks)])
    return ProbeSet(torch.cat(states, dim=1), labels, groups)


# --------------------------------------------------------------------------- bioS


def qa_accuracy(lm: LoadedModel, population: bios.Population, people: Sequence[int], task: str) -> np.ndarray:
    """Exact-match correctness of the greedy answer, per person."""
    vocab: Vocab = lm.tokenizer
    prompts, answers = [], []
    for i in people:
        doc = qa_doc(vocab, population.people[i], task, answer_only=True)
        split = doc.target.index(True)
        prompts.append(doc.ids[:split])
        answers.append(doc.ids[split:-1])
    return answers_correct(lm, prompts, answers)


@dataclass
class Answers:
    """Greedy answers to one part-3.2 task, per person, scored against the truth."""

    correct: np.ndarray  # [n] bool: the final answer is right (the verdict after a CoT; every part of a dual answer)
    exact: np.ndarray  # [n] bool: the whole answer, CoT steps included, is right and ends with <eos>
    parts: np.ndarray  # [n, k] bool: each part between separators is right (k = parts of the true answer)
    majority: float  # share of the most common true final answer: the score of always guessing it


def score_answer(got: list[str], truth: list[str]) -> tuple[bool, list[bool]]:
    """(final answer right, each part right) of generated answer words against the true ones."""
    got_parts, true_parts = bios.answer_parts(got), bios.answer_parts(truth)
    parts = [k < len(got_parts) and got_parts[k] == part for k, part in enumerate(true_parts)]
    if bios.final_answer(truth) != true_parts[-1]:  # a CoT answer: only its verdict counts
        return bios.final_answer(got) == bios.final_answer(truth), parts
    return all(parts) and len(got_parts) == len(true_parts), parts


def manipulation_answers(lm: LoadedModel, population: bios.Population, people: Sequence[int], task: str) -> Answers:
    """Greedy decoding of a part-3.2 question for each person of a QA split (partners from the same split)."""
    vocab: Vocab = lm.tokenizer
    prompts, truths = [], []
    for i in people:
        doc = split_qa_doc(vocab, population, i, task, people, answer_only=True)
        split = doc.target.index(True)
        prompts.append(doc.ids[:split])
        truths.append(vocab.decode(doc.ids[split:-1]))
    outputs = sample(lm, prompts, max_new=max(len(t) for t in truths) + 2, seed=0, temperature=0, desc=task)
    correct, exact, parts = [], [], []
    for (tokens, ended), truth in zip(outputs, truths):
        got = vocab.decode(tokens)
        right, right_parts = score_answer(got, truth)
        correct.append(right)
        exact.append(ended and got == truth)
        parts.append(right_parts)
    finals = [tuple(bios.final_answer(t)) for t in truths]
    majority = max(finals.count(f) for f in set(finals)) / len(finals)
    return Answers(np.array(correct), np.array(exact), np.array(parts), majority)


@dataclass
class BiosProbeSet:
    features: dict[str, torch.Tensor]  # position name -> [L+1, N, d], one row per person
    labels: dict[str, np.ndarray]  # attribute -> [N] class index (the birth date by its month)


def bios_probe_set(lm: LoadedModel, population: bios.Population) -> BiosProbeSet:
    """P-probe and Q-probe features for every person, and the six attributes as class labels.

    P: states in the canonical biography at the word just before each attribute's value (the
    value has not appeared yet there); "p-probe" reads the one before the first value (the birth
    date), where every attribute is still to come. Q: the state at the last word of
    `<bos> full name` alone (in a causal model also the state at the name in the biography).
    """
    vocab: Vocab = lm.tokenizer
    canonical = [bios.canonical_biography(person) for person in population.people]
    sequences = [vocab.encode(tokens, bos=True) for tokens, _ in canonical]
    # <bos> shifts words by one, so the word before a value sits at the value's word index
    positions = [[where[a] for a in bios.ATTRIBUTES] for _, where in canonical]
    p_states = torch.stack(hidden_states_at(lm, sequences, positions, desc="P-probe states"), dim=1)  # [L+1, N, 6, d]
    names = [vocab.encode(bios.words(person.name), bos=True) for person in population.people]
    q_states = torch.stack(hidden_states_at(lm, names, [[len(s) - 1] for s in names], desc="Q-probe states"), dim=1)
    features = {"p-probe": p_states[:, :, 0], "q-probe": q_states[:, :, 0]}
    for k, attribute in enumerate(bios.ATTRIBUTES):
        features[f"p-probe-before/{attribute}"] = p_states[:, :, k]
    labels = {a: np.array([person.label(a) for person in population.people]) for a in bios.ATTRIBUTES}
    return BiosProbeSet(features, labels)
