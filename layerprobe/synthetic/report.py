"""Schema rows for the synthetic studies: CFG generation and DP-state probes, bioS QA and P/Q probes.

Each unit (model, task, subtask, language, method) is computed only if the results file lacks
it, so an interrupted `probe_synthetic.py` resumes. Probes run on the trained model
(`probe-trained`) and on a randomly initialised model of the same shape (`probe-random`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from layerprobe.models import LoadedModel
from layerprobe.probes import cross_validate
from layerprobe.results import ResultsFile, wilson_interval
from layerprobe.synthetic import bios
from layerprobe.synthetic.cfg import Grammar
from layerprobe.synthetic.data import FINETUNES, cfg_ids
from layerprobe.synthetic.evaluate import (
    attention_by_distance, attention_maps, bios_probe_set, boundary_attention, cfg_generation, cfg_probe_set,
    collision_support, first_occurrences, manipulation_answers, qa_accuracy,
)
from layerprobe.synthetic.runs import RunConfig
from layerprobe.synthetic.vocab import Vocab


@dataclass
class ProbeOptions:
    samples: int = 200  # generated strings per condition
    cut: int | None = None  # prefix length for "generation from a cut" (default: half the shortest string)
    strings: int = 200  # strings whose states the CFG probes read
    positions: int = 8  # random positions per string
    folds: int = 5
    seed: int = 0


def summary_row(values: np.ndarray, *, metric: str = "accuracy", binary: bool = True, **fields: object) -> dict:
    """One layer = -1 row: the mean of per-item values, with a Wilson interval for 0/1 outcomes."""
    values = np.asarray(values, dtype=float)
    low, high = wilson_interval(values.sum(), len(values)) if binary else (np.nan, np.nan)
    return dict(layer=-1, n_layers=fields.pop("n_layers"), metric=metric, value=float(values.mean()),
                n_items=len(values), ci_low=float(low), ci_high=float(high), **fields)


def cfg_report(config: RunConfig, lm: LoadedModel, twin: LoadedModel, results: ResultsFile,
               options: ProbeOptions) -> None:
    grammar, vocab = config.grammar_(), lm.tokenizer
    cut = options.cut if options.cut is not None else grammar.length_range()[0] // 2
    base = dict(model=lm.name, language="", n_layers=lm.n_layers)
    for subtask, prefix, corrupted in [("root", 0, False), (f"cut{cut}", cut, False), (f"cut{cut}-corrupted", cut, True)]:
        unit = dict(task="cfg-generation", subtask=subtask, method="sample")
        if results.done(model=lm.name, **unit):
            continue
        generation = cfg_generation(lm, grammar, vocab, options.samples, prefix, options.seed, corrupted_prompt=corrupted)
        results.add([summary_row(generation.accepted, **base, **unit),
                     summary_row(generation.first_seen, metric="distinct", **base, **unit),
                     summary_row(generation.lengths, metric="mean_length", binary=False, **base, **unit),
                     *support_rows(generation.strings, **base, **unit)])
    unit = dict(task="cfg-generation", subtask="root", method="grammar")  # the reference: the grammar's own samples
    if not results.done(model=lm.name, **unit):
        rng = np.random.default_rng([options.seed, 0])
        strings = [tuple(grammar.sample(rng).terminals) for _ in range(options.samples)]
        results.add([summary_row(first_occurrences(strings), metric="distinct", **base, **unit),
                     summary_row([len(s) for s in strings], metric="mean_length", binary=False, **base, **unit),
                     *support_rows(strings, **base, **unit)])
    for method, model in [("attention-trained", lm), ("attention-random", twin)]:
        if not results.done(model=lm.name, task="cfg-attention", method=method):
            results.add(attention_rows(model, grammar, vocab, min(options.strings, 100), options.seed,
                                       dict(base, task="cfg-attention", method=method)))
    for method, model in [("probe-trained", lm), ("probe-random", twin)]:
        labels = [name for name in _cfg_label_names(grammar.depth)
                  if not results.done(model=lm.name, task="cfg", subtask=name, method=method)]
        if not labels:
            continue
        probe_set = cfg_probe_set(model, grammar, vocab, options.strings, options.positions, options.seed)
        for name in labels:
            outcome = cross_validate(probe_set.features, probe_set.labels[name], folds=options.folds,
                                     seed=options.seed, groups=probe_set.groups)
            results.add(outcome.rows(model=lm.name, task="cfg", subtask=name, method=method))


def manipulation_rows(lm: LoadedModel, population: bios.Population, people: list[int], tasks: tuple[str, ...],
                      base: dict) -> list[dict]:
    """Per part-3.2 task: accuracy of the final answer, exact match of the whole answer, the
    majority-answer baseline and, for answers in parts (dual, CoT), the accuracy of each part."""
    rows = []
    for task in tasks:
        answers = manipulation_answers(lm, population, people, task)
        rows += [summary_row(answers.correct, **base, attribute=task),
                 summary_row(answers.exact, metric="exact", **base, attribute=task),
                 summary_row(np.full(len(people), answers.majority), metric="majority", binary=False, **base,
                             attribute=task)]
        if answers.parts.shape[1] > 1:
            rows += [summary_row(answers.parts[:, k], metric=f"part{k + 1}", **base, attribute=task)
                     for k in range(answers.parts.shape[1])]
    return rows


def support_rows(strings: list[tuple], **fields: object) -> list[dict]:
    """The birthday-paradox support estimate of the strings and its count of colliding pairs."""
    support, collisions = collision_support(strings)
    return [summary_row(np.full(len(strings), support), metric="support_collision", binary=False, **fields),
            summary_row(np.full(len(strings), collisions), metric="collisions", binary=False, **fields)]


MAX_DISTANCE = 64
"""Attention-by-distance rows stop here (the paper's figure fades out well before)."""


def attention_rows(lm: LoadedModel, grammar: Grammar, vocab: Vocab, n_strings: int, seed: int, base: dict) -> list[dict]:
    """Per block and head: mean attention by token distance, and excess attention to the most adjacent
    earlier span end of every level below the root (`evaluate.boundary_attention`)."""
    rng = np.random.default_rng([seed, 11])
    samples = [grammar.sample(rng) for _ in range(n_strings)]
    maps = attention_maps(lm, [cfg_ids(vocab, s.terminals)[:-1] for s in samples])  # <bos> terminals
    profile = attention_by_distance(maps, max(m.shape[-1] for m in maps) - 1)  # the baseline needs every distance
    max_distance = min(MAX_DISTANCE, profile.shape[-1] - 1)
    levels = list(range(1, grammar.depth))
    excess = boundary_attention(maps, [s.span_end for s in samples], levels, profile)
    n_layers, n_heads = profile.shape[:2]
    common = dict(base, n_items=n_strings, ci_low=np.nan, ci_high=np.nan)
    rows = [dict(common, layer=layer + 1, subtask=f"distance/head{head}/d{d}", metric="attention",
                 value=float(profile[layer, head, d]))
            for layer in range(n_layers) for head in range(n_heads) for d in range(max_distance + 1)]
    rows += [dict(common, layer=layer + 1, subtask=f"boundary/head{head}/level{level}", metric="excess_attention",
                  value=float(excess[layer, head, column]))
             for layer in range(n_layers) for head in range(n_heads) for column, level in enumerate(levels)]
    return rows


def _cfg_label_names(depth: int) -> list[str]:
    return [f"{kind}/level{level}" for level in range(1, depth) for kind in ("ancestor", "span_end")]


def bios_report(config: RunConfig, lm: LoadedModel, twin: LoadedModel, results: ResultsFile,
                options: ProbeOptions) -> None:
    population = config.population()
    condition = config.condition()
    base = dict(model=lm.name, subtask=condition, n_layers=lm.n_layers, method="greedy")
    for split, people in config.qa_splits(population).items():
        if not results.done(model=lm.name, task="bios-qa", subtask=condition, language=split, method="greedy"):
            correct = {question: qa_accuracy(lm, population, people, question) for question in bios.ATTRIBUTES}
            rows = [summary_row(hits, task="bios-qa", language=split, attribute=question, **base)
                    for question, hits in correct.items()]
            rows.append(summary_row(np.concatenate(list(correct.values())), task="bios-qa", language=split,
                                    attribute="all", **base))
            results.add(rows)
        if not results.done(model=lm.name, task="bios-manipulation", subtask=condition, language=split, method="greedy"):
            results.add(manipulation_rows(lm, population, people, FINETUNES[config.finetune],
                                          dict(base, task="bios-manipulation", language=split)))
    if config.finetune != "qa":
        return  # part-3.2 runs: the probes of their shared pretraining are those of the part-3.1 run
    for method, model in [("probe-trained", lm), ("probe-random", twin)]:
        names = [(position, attribute) for position in ("p-probe", "p-probe-before", "q-probe")
                 for attribute in bios.ATTRIBUTES]
        todo = [(p, a) for p, a in names if not results.done(model=lm.name, task="bios", subtask=f"{p}/{a}", method=method)]
        if not todo:
            continue
        probe_set = bios_probe_set(model, population)
        for position, attribute in todo:
            key = f"{position}/{attribute}" if position == "p-probe-before" else position
            outcome = cross_validate(probe_set.features[key], probe_set.labels[attribute], folds=options.folds,
                                     seed=options.seed)
            results.add(outcome.rows(model=lm.name, task="bios", subtask=f"{position}/{attribute}", method=method))
