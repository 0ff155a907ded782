"""The one item type every multiple-choice task hands to the engine."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MCItem:
    """A prompt and its candidate continuations, scored by teacher forcing after the prompt.

    Candidates are continuations of the prompt text as written: put the separating space in the
    candidate (" Paris"), since the engine tokenizes prompt and candidates separately and
    concatenates the token ids. `correct` holds the indices of the true candidates (one for MC1
    tasks, several for TruthfulQA's MC2/MC3). `meta` carries what the results are grouped by
    (subtask, language, operation, digits, ...).
    """

    prompt: str
    candidates: list[str]
    correct: list[int]
    meta: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.candidates) < 2:
            raise ValueError(f"an item needs at least two candidates, got {len(self.candidates)}")
        if not self.correct or any(not 0 <= i < len(self.candidates) for i in self.correct):
            raise ValueError(f"correct indices {self.correct} out of range for {len(self.candidates)} candidates")
