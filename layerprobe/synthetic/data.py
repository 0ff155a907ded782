"""Training streams for the synthetic worlds: token ids, loss masks and `batch_fn(step)` for `train`.

Every batch is a pure function of (seed, step), so a resumed run sees exactly the batches an
uninterrupted one would. Documents are `<bos> tokens <eos>`, right-padded with <pad>.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from layerprobe.synthetic import bios
from layerprobe.synthetic.cfg import Grammar, corrupt
from layerprobe.synthetic.train import Batch
from layerprobe.synthetic.vocab import Vocab


@dataclass
class Doc:
    ids: list[int]
    target: list[bool] | None = None  # per token: trained on (None: every token)


def pad(docs: Sequence[Doc]) -> Batch:
    """Right-padded ids [B, T], plus the loss mask when any document restricts its targets."""
    length = max(len(doc.ids) for doc in docs)
    ids = torch.full((len(docs), length), Vocab.pad_id, dtype=torch.long)
    mask = torch.zeros((len(docs), length), dtype=torch.bool)
    for row, doc in enumerate(docs):
        ids[row, : len(doc.ids)] = torch.as_tensor(doc.ids)
        mask[row, : len(doc.ids)] = torch.as_tensor(doc.target) if doc.target is not None else True
    if all(doc.target is None for doc in docs):
        return ids
    return ids, mask


def step_rng(seed: int, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, step])


def corpus_batches(docs: Sequence[Doc], batch: int, seed: int) -> Callable[[int], Batch]:
    """Batches drawn uniformly (with replacement) from a fixed corpus."""
    def batch_fn(step: int) -> Batch:
        rng = step_rng(seed, step)
        return pad([docs[i] for i in rng.integers(len(docs), size=batch)])
    return batch_fn


# --------------------------------------------------------------------------- CFG


def cfg_vocab(grammar: Grammar) -> Vocab:
    return Vocab(str(t) for t in grammar.terminals)


def cfg_ids(vocab: Vocab, terminals: Sequence[int]) -> list[int]:
    """<bos> terminals <eos> as ids."""
    return vocab.encode([str(t) for t in terminals], bos=True, eos=True)


def cfg_batches(grammar: Grammar, vocab: Vocab, batch: int, seed: int, corrupted: float = 0.0) -> Callable[[int], Batch]:
    """Fresh strings from the grammar at every step (an endless stream, as in the paper); each is
    corrupted (`cfg.corrupt`) with probability `corrupted`."""
    def batch_fn(step: int) -> Batch:
        rng = step_rng(seed, step)
        docs = []
        for _ in range(batch):
            terminals = grammar.sample(rng).terminals
            if corrupted and rng.random() < corrupted:
                terminals = corrupt(terminals, grammar.terminals, rng)
            docs.append(Doc(cfg_ids(vocab, terminals)))
        return pad(docs)
    return batch_fn


# --------------------------------------------------------------------------- bioS

FINETUNES: dict[str, tuple[str, ...]] = {
    "qa": (),
    "partial": ("birth_year", "birth_day"),
    "dual": bios.DUAL_TASKS,
    "classify": ("year_parity", "month_half"),
    "classify-cot": ("year_parity", "year_parity_cot", "month_half", "month_half_cot"),
    "compare": ("compare",),
    "compare-cot": ("compare", "compare_cot"),
    "inverse": ("inverse",),
    "inverse-cot": ("inverse", "inverse_cot"),
}
"""Fine-tuning conditions of bioS `pretrain-finetune` runs: "qa" is part 3.1 (the six attribute
questions); each part-3.2 condition adds its tasks to them (the model must still learn to extract
before it can manipulate). A "-cot" condition trains the CoT and the direct question alike, so its
direct rows measure "trained with CoT, tested without"."""


def finetune_tasks(finetune: str) -> tuple[str, ...]:
    """Every question a fine-tuning condition trains (and evaluates)."""
    return bios.ATTRIBUTES + FINETUNES[finetune]


def qa_doc(vocab: Vocab, person: bios.Person, task: str, answer_only: bool, partner: bios.Person | None = None) -> Doc:
    """<bos> question Answer: answer <eos>; with `answer_only` the loss covers the answer and <eos>."""
    prompt, answer = bios.qa_tokens(person, task, partner)
    ids = vocab.encode(prompt, bos=True) + vocab.encode(answer, eos=True)
    target = [False] * (len(prompt) + 1) + [True] * (len(answer) + 1) if answer_only else None
    return Doc(ids, target)


def split_qa_doc(vocab: Vocab, population: bios.Population, person: int, task: str, pool: Sequence[int],
                 answer_only: bool) -> Doc:
    """`qa_doc` for person `person` of a QA split `pool` (comparison partners come from the same split)."""
    partner = (population.people[bios.comparison_partner(population, person, list(pool))]
               if task in bios.PAIRED_TASKS else None)
    return qa_doc(vocab, population.people[person], task, answer_only, partner)


def bios_docs(vocab: Vocab, population: bios.Population, augment: bool, multi: int, seed: int,
              prose: str = "bioS", only: Sequence[int] | None = None) -> list[Doc]:
    """Biographies: one per person (bioS single), or `multi` per person, permuted, full names; with
    `only`, just those people (the celebrities) get the augmented ones, the others a single one."""
    texts = bios.biographies(population, multi=multi if augment else 1, permute=augment, fullname=augment, seed=seed,
                             prose=prose)
    if only is not None:
        single = bios.biographies(population, seed=seed + 1, prose=prose)
        chosen = set(only)
        texts = [mine if i in chosen else single[i] for i, mine in enumerate(texts)]
    return [Doc(vocab.encode(bios.words(text), bos=True, eos=True)) for per_person in texts for text in per_person]


def qa_docs(vocab: Vocab, population: bios.Population, people: Sequence[int], answer_only: bool,
            tasks: Sequence[str] = bios.ATTRIBUTES) -> list[Doc]:
    """Every QA task for the given people (one QA split)."""
    return [split_qa_doc(vocab, population, i, task, people, answer_only) for i in people for task in tasks]
