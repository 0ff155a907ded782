"""Multi-token facts: the project's fact table, answers of 1-3 tokens teacher-forced token by token,
kept when the model produces the whole answer; curves per answer length and token position."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import numpy as np

from layerprobe.lens import Lens
from layerprobe.models import LoadedModel
from layerprobe.tasks.factual import Fact
from layerprobe.trace.readout import CutItems, Readout, read_positions, readouts_by_label

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
    return readouts_by_label(readouts, kept, items)
