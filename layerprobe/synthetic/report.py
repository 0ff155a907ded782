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
from layerprobe.synthetic.data import FINETUNES
from layerprobe.synthetic.evaluate import (
    bios_probe_set, cfg_generation, cfg_probe_set, first_occurrences, manipulation_answers, qa_accuracy,
)
from layerprobe.synthetic.runs import RunConfig


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
    for subtask, prefix in [("root", 0), (f"cut{cut}", cut)]:
        unit = dict(task="cfg-generation", subtask=subtask, method="sample")
        if results.done(model=lm.name, **unit):
            continue
        generation = cfg_generation(lm, grammar, vocab, options.samples, prefix, options.seed)
        results.add([summary_row(generation.accepted, **base, **unit),
                     summary_row(generation.first_seen, metric="distinct", **base, **unit),
                     summary_row(generation.lengths, metric="mean_length", binary=False, **base, **unit)])
    unit = dict(task="cfg-generation", subtask="root", method="grammar")  # the reference: the grammar's own samples
    if not results.done(model=lm.name, **unit):
        rng = np.random.default_rng([options.seed, 0])
        strings = [tuple(grammar.sample(rng).terminals) for _ in range(options.samples)]
        results.add([summary_row(first_occurrences(strings), metric="distinct", **base, **unit),
                     summary_row([len(s) for s in strings], metric="mean_length", binary=False, **base, **unit)])
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


def _cfg_label_names(depth: int) -> list[str]:
    return [f"{kind}/level{level}" for level in range(1, depth) for kind in ("ancestor", "span_end")]


def bios_report(config: RunConfig, lm: LoadedModel, twin: LoadedModel, results: ResultsFile,
                options: ProbeOptions) -> None:
    population = config.population()
    condition = config.condition()
    base = dict(model=lm.name, subtask=condition, n_layers=lm.n_layers, method="greedy")
    for split, people in [("train", population.qa_train), ("test", population.qa_test)]:
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
