"""Few-shot prompt layout and seeded item selection shared by the study-1 tasks.

Study 1 prompts every task with a few solved demonstrations in a "Q: ... / A: ..." layout and
then scores the candidate answers as continuations of the final "A:". Keeping the layout in one
place means all tasks (and all languages) present the model with the same shape.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def qa_prompt(demonstrations: Sequence[tuple[str, str]], question: str) -> str:
    """'Q: q1\\nA: a1\\n\\nQ: q2\\nA: a2\\n\\nQ: question\\nA:' (candidates then start with a space)."""
    blocks = [f"Q: {q}\nA: {a}" for q, a in demonstrations]
    blocks.append(f"Q: {question}\nA:")
    return "\n\n".join(blocks)


def interleave(groups: Sequence[Sequence[T]]) -> list[T]:
    """Round-robin over groups so that any prefix (a --limit) covers every group about equally."""
    out: list[T] = []
    for index in range(max((len(group) for group in groups), default=0)):
        out.extend(group[index] for group in groups if index < len(group))
    return out


def shuffled_candidates(true: str, false: Sequence[str], rng: random.Random) -> tuple[list[str], int]:
    """The true answer among the false ones at a random position: (candidates, index of the true one)."""
    candidates = list(false)
    position = rng.randint(0, len(candidates))
    candidates.insert(position, true)
    return candidates, position


def with_demonstrations(records: Sequence[T], rng: random.Random, shots: int, limit: int | None = None,
                        compatible: Callable[[T, T], bool] | None = None) -> list[tuple[T, list[T]]]:
    """Loaded records in a seeded order, each with `shots` demonstrations drawn from the other records
    (those `compatible(record, other)` allows, e.g. ones that do not give the answer away)."""
    order = list(range(len(records)))
    rng.shuffle(order)
    out = []
    for index in order[:limit]:
        others = [other for i, other in enumerate(records)
                  if i != index and (compatible is None or compatible(records[index], other))]
        out.append((records[index], rng.sample(others, min(shots, len(others)))))
    return out
