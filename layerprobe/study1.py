"""Study 1's runner, shared by probe_math.py, probe_factual.py, probe_tfqa.py and probe_logical.py.

For every model and every task (a list of `MCItem`s) it writes schema rows to
`<out>/<family>_<model>.csv` through `ResultsFile`:

- lens (method "lens-norm" | "lens-raw", suffix "-lennorm" with --length-norm): the engine's
  per-layer candidate log-probs turned into accuracy (or TruthfulQA's mc1/mc2/mc3) per item;
- probe (method "probe"): a binary linear probe per layer on each candidate's features (mean of
  its token states) says "true candidate or not"; trained on the candidates of k-1 folds of items,
  it picks the highest-scoring candidate of each held-out item (metric "accuracy"); items that share
`meta["group"]` (one problem in several languages) stay in one fold. Metric
  "control" is the same with the true candidate of every item replaced by a random one
  (Hewitt & Liang's control task: what the probe can fit without the property). Probe rows carry
  `probe_unconverged`: how many of the layer's fits (folds x {real, control}) stopped at max_iter.

Every row also carries `data` (the --data file or hub id, or "built-in") and `skipped_rows` (rows
of that file that could not make an item; `n_items` counts only the scored items).
Rows are grouped by the items' meta (subtask, language); when a task has several subtasks, a
subtask "all" pools them per language. A unit (model, task, subtask, language, method) already in
the file is skipped, and a model whose units are all done is not even loaded, so an interrupted
run resumes where it stopped.

Under `torchrun` / `accelerate launch` every process loads the model and scores its share of each
task's batches (`layerprobe.parallel`); the main process alone fits the probes and writes the CSV,
which is the same, byte for byte, as a single process writes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from layerprobe import parallel
from layerprobe.cli import add_head_args, add_model_args, add_run_args, models_from_args
from layerprobe.engine import MCScores, score_items
from layerprobe.errors import LayerprobeError
from layerprobe.metrics import item_metrics
from layerprobe.models import load_model
from layerprobe.probes import fit_probes, fold_ids
from layerprobe.results import ResultsFile, layer_rows
from layerprobe.tasks.base import MCItem
from layerprobe.tasks.io import LoadedItems

PROBE_FOLDS = 5


def add_study1_args(parser: argparse.ArgumentParser) -> None:
    """The flags every study-1 script shares (model, run, method, lens, data)."""
    add_model_args(parser)
    add_head_args(parser)
    add_run_args(parser)
    parser.add_argument("--method", choices=["lens", "probe", "both"], default="both",
                        help="lens-MC scoring, linear probes on candidate states, or both (default both)")
    parser.add_argument("--lens", choices=["norm", "raw"], default="norm",
                        help="norm: final norm then unembedding (correct logit lens, default); raw: unembedding "
                             "only, as the original study-1 code")
    parser.add_argument("--length-norm", action="store_true",
                        help="score candidates by mean instead of summed token log-prob")
    parser.add_argument("--data", default=None,
                        help="read items from a public-format file instead of the built-in generator")


@dataclass(frozen=True)
class RunOptions:
    methods: tuple[str, ...]  # subset of ("lens", "probe")
    lens: str = "norm"
    length_norm: bool = False
    seed: int = 0
    device: str | None = None
    dtype: str | None = None
    batch_size: int | None = None
    head_dtype: str = "float32"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "RunOptions":
        methods = ("lens", "probe") if args.method == "both" else (args.method,)
        return cls(methods, args.lens, args.length_norm, args.seed, args.device, args.dtype, args.batch_size,
                   args.head_dtype)

    @property
    def lens_method(self) -> str:
        """e.g. lens-norm, lens-raw-lennorm, lens-norm-mixed: another head precision is another method, so
        its rows never pass for (or resume) the exact fp32 ones."""
        head = "" if self.head_dtype == "float32" else f"-{self.head_dtype}"
        return f"lens-{self.lens}" + ("-lennorm" if self.length_norm else "") + head


def output_path(out: str | Path, family: str, model: str) -> Path:
    return Path(out) / f"{family}_{model.replace('/', '_')}.csv"


def groups(items: Sequence[MCItem]) -> list[tuple[str, str, np.ndarray]]:
    """(subtask, language, item indices) per group, plus subtask "all" per language when there are several."""
    keys = [(str(item.meta.get("subtask", "")), str(item.meta.get("language", ""))) for item in items]
    out = [(subtask, language, np.array([i for i, k in enumerate(keys) if k == (subtask, language)]))
           for subtask, language in dict.fromkeys(keys)]
    languages = list(dict.fromkeys(language for _, language in keys))
    for language in languages:
        subtasks = {subtask for subtask, lang in keys if lang == language}
        if len(subtasks) > 1:
            out.append(("all", language, np.array([i for i, k in enumerate(keys) if k[1] == language])))
    return out


def probe_correct(items: Sequence[MCItem], candidate_features: Sequence[np.ndarray], seed: int,
                  folds: int = PROBE_FOLDS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Out-of-fold item correctness [L+1, n_items] of the candidate probe and of its control, and
    per layer the number of those fits (folds x 2) whose solve stopped before converging."""
    features = np.concatenate(candidate_features).transpose(1, 0, 2)  # [L+1, total candidates, d]
    owner = np.concatenate([np.full(len(f), i) for i, f in enumerate(candidate_features)])
    rng = np.random.default_rng(seed)
    true = [set(item.correct) for item in items]
    control = [{int(rng.integers(len(item.candidates)))} for item in items]
    group = [str(item.meta.get("group", f"item{i}")) for i, item in enumerate(items)]  # e.g. one problem in six languages
    fold = fold_ids(len(owner), min(folds, len(set(group))), seed, groups=[group[i] for i in owner])
    results, unconverged = [], np.zeros(features.shape[0], dtype=int)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # these solves are small: on a busy CPU, 2 threads run them ~50x slower
    try:
        for targets in (true, control):
            correct, stopped = _probe_pick(features, owner, fold, items, targets)
            results.append(correct)
            unconverged += stopped
    finally:
        torch.set_num_threads(threads)
    return results[0], results[1], unconverged


def _probe_pick(features: np.ndarray, owner: np.ndarray, fold: np.ndarray, items: Sequence[MCItem],
                targets: Sequence[set[int]]) -> tuple[np.ndarray, np.ndarray]:
    """[L+1, n_items] 1 where the probe's top candidate of a held-out item is in `targets`, and
    per layer the number of folds whose probe did not converge."""
    labels = np.concatenate([[int(c in t) for c in range(len(item.candidates))] for item, t in zip(items, targets)])
    correct = np.zeros((features.shape[0], len(items)))
    unconverged = np.zeros(features.shape[0], dtype=int)
    for k in np.unique(fold):
        test = fold == k
        probes = fit_probes(features[:, ~test], labels[~test])
        unconverged += ~probes.converged
        probability = probes.predict_proba(features[:, test])[..., -1]
        for i in np.unique(owner[test]):
            pick = probability[:, owner[test] == i].argmax(axis=1)  # [L+1] candidate index within item i
            correct[:, i] = [float(p in targets[i]) for p in pick]
    return correct, unconverged


def _pending(results: ResultsFile, model: str, task: str, items: Sequence[MCItem], methods: Sequence[str]) -> list[str]:
    return [method for method in methods
            if not all(results.done(model=model, task=task, subtask=s, language=l, method=method)
                       for s, l, _ in groups(items))]


def task_rows(model: str, task: str, items: Sequence[MCItem], scores: MCScores, method: str,
              options: RunOptions) -> list[dict[str, object]]:
    """Schema rows of one task and method (lens or probe) for every group."""
    unconverged = None
    if method == "probe":
        correct, control, unconverged = probe_correct(items, scores.candidate_features, options.seed)
        values = {"accuracy": correct, "control": control}
    else:
        values = item_metrics(items, scores.logprob, scores.n_tokens, truthfulqa=(task == "truthfulqa"),
                              length_norm=options.length_norm)
    record = data_record(items)
    rows: list[dict[str, object]] = []
    for subtask, language, index in groups(items):
        for metric, per_item in values.items():
            interval = "bootstrap" if metric == "mc2" or metric == "mc3" else "wilson"
            rows += layer_rows(per_item[:, index], metric=metric, model=model, task=task, method=method,
                               subtask=subtask, language=language, interval=interval, seed=options.seed, **record)
    if unconverged is not None:
        for row in rows:
            row["probe_unconverged"] = int(unconverged[row["layer"]])
    return rows


def data_record(items: Sequence[MCItem]) -> dict[str, object]:
    """The extra columns that say where a task's items came from: `data` (a file, a hub id or
    "built-in") and `skipped_rows` (rows of that file that could not make an item)."""
    if isinstance(items, LoadedItems):
        return {"data": items.source, "skipped_rows": items.skipped_rows}
    return {"data": "built-in", "skipped_rows": 0}


def run_study1(models: Sequence[str], family: str, tasks: dict[str, list[MCItem]], out: str | Path,
               options: RunOptions) -> list[Path]:
    """Score every task on every model with the chosen methods; returns the CSV paths written."""
    method_names = {"lens": options.lens_method, "probe": "probe"}
    small = [task for task, items in tasks.items()
             if len({str(item.meta.get("group", i)) for i, item in enumerate(items)}) < 2]
    if "probe" in options.methods and small:
        raise LayerprobeError(f"task {small[0]}: the probe needs at least 2 items or problems (cross-validation); "
                              "raise --limit or use --method lens")
    paths = []
    for model in models:
        path = output_path(out, family, model)
        results = ResultsFile(path)
        # What is left to do is the main process's reading of the CSV, so that all processes run the same work.
        pending = parallel.agree({task: _pending(results, model, task, items, [method_names[m] for m in options.methods])
                                  for task, items in tasks.items()})
        paths.append(path)
        if not any(pending.values()):
            parallel.say(f"{path}: {model} already done, skipping")
            continue
        lm = load_model(model, device=options.device, dtype=options.dtype)
        for task, methods in pending.items():
            if not methods:
                continue
            scores = score_items(lm, tasks[task], lens=options.lens, batch_size=options.batch_size,
                                 features="probe" in methods, desc=f"{model} {task}", head_dtype=options.head_dtype)
            if parallel.is_main():  # the others have scored their share; only the main process fits and writes
                for method in methods:
                    results.add(task_rows(model, task, tasks[task], scores, method, options))
        parallel.say(f"wrote {path}")
    return paths


def study1_main(argv: Sequence[str] | None, description: str, family: str, default_limit: int | None,
                build_tasks: Callable[[argparse.Namespace, int | None], dict[str, list[MCItem]]],
                extra_args: Callable[[argparse.ArgumentParser], None] | None = None) -> list[Path]:
    """A whole study-1 script: parse the common flags (plus `extra_args`), build the tasks with the
    --limit (or the script's default per-subtask count; None lets `build_tasks` choose per subtask),
    run every model, return the CSV paths."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study1_args(parser)
    if extra_args is not None:
        extra_args(parser)
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        raise LayerprobeError(f"--limit must be at least 1, got {args.limit}")
    models = models_from_args(args)  # every name checked before the tasks are built or a model loads
    tasks = build_tasks(args, args.limit if args.limit is not None else default_limit)
    return run_study1(models, family, tasks, args.out, RunOptions.from_args(args))
