"""Study 2 ("How Do LLMs Use Their Depth?"): what a lens reads at every layer, and when the final guess appears.

The target of every trace is the model's own final top-1 token. At every layer the lens gives its
rank (1 + the number of vocabulary tokens with a strictly higher logit, so tied tokens share a rank)
and its probability. The analyses:

- pos: prompts cut just before a word of a given part of speech (spaCy tags on held-out corpus
  text), kept when the final top-1 is the word's first token; plus a random-cut baseline.
- facts: the project's fact table, answers of 1-3 tokens teacher-forced token by token, kept when the
  model produces the whole answer; curves per answer length and token position.
- options: option-constrained tasks (the option tokens are the only candidates): real MMLU questions
  with lettered options, few-shot, and the project's sentiment and entailment: when the correct
  option first tops the options (enter) and from which layer on it stays there (settle), and the
  options' "shortlist" in the full vocabulary (are they all in the top k before one is picked?).
- frequency: the share of per-layer top-1 tokens in frequency buckets of the corpus.
- flips: the share of positions whose top-1 at a layer differs from the final top-1.

Hidden states come from the engine (one forward per sequence, states only at the positions used);
`readout` holds what every analysis shares. Each analysis has its own module (`pos`, `facts`,
`options`, `frequency` for frequency and flips); this module runs them on a `TraceContext`. A new
analysis is a module plus an `analyse_<name>` function here, its entry in `ANALYSE` and `ANALYSES`,
and its default limit in `DEFAULT_LIMITS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from layerprobe.lens import Lens
from layerprobe.models import LoadedModel
from layerprobe.tasks.factual import FACTS, Fact
from layerprobe.trace.facts import fact_cuts, trace_facts
from layerprobe.trace.frequency import corpus_positions, flip_rows, frequency_rows, token_frequency_ranks
from layerprobe.trace.options import OptionTask, default_option_tasks, option_rows, shortlist_rows, trace_options
from layerprobe.trace.pos import pos_cuts, pos_tagger, trace_cuts
from layerprobe.trace.readout import Readout, rank_rows, read_positions

ANALYSES = ("pos", "facts", "options", "frequency", "flips")
DEFAULT_LIMITS = {"pos": 40, "facts": 20, "options": 57, "frequency": 300, "flips": 300}
"""Items per subtask without --limit: tags, answer lengths, option tasks (57: one MMLU question per
subject); positions for frequency and flips."""
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
    option_tasks: dict[str, OptionTask] | None = None

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


def analyse_options(ctx: TraceContext) -> dict[str, Rows]:
    tasks = ctx.option_tasks or default_option_tasks(ctx.limit_for("options"), ctx.seed)
    rows: dict[str, Rows] = {method: [] for method in ctx.lenses}
    for task, option_task in tasks.items():
        record = {"data": option_task.data, "skipped_rows": option_task.skipped_rows}
        traces = trace_options(ctx.lm, ctx.lenses, option_task.items, ctx.progress, desc=f"options {task}")
        for method, trace in traces.items():
            unit = dict(model=ctx.lm.name, task="options", subtask=task, method=method, seed=ctx.seed)
            rows[method] += [dict(row, **record) for row in option_rows(trace, **unit) + shortlist_rows(trace, **unit)]
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
