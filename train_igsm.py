"""Train small LMs on iGSM grade-school math and grade their greedy solutions (Physics of LMs 2.1, 2.2).

    python train_igsm.py                            # one model (preset "cpu", 4x128 + Canon A, 24000 steps of 8, first 25% 1-op)
    python train_igsm.py --retry 0 0.1 0.5          # part 2.2: retry data, graded on clean problems
    python train_igsm.py --depths 2 4 8             # depth vs width at the parameter count of --layers/--width
    python train_igsm.py --finetune-from out/runs/<error-free run> --finetune full lora8 lora32 \
        --retry 0.2 --steps 300                     # part 2.2: LoRA vs full fine-tuning on retry data
    python train_igsm.py --preset paper --layers 12 --width 768 --heads 12 --steps 100000 \\
        --batch 128 --lr 3e-4 --eval 500            # the paper's scale, for a GPU

Each model goes to out/runs/<name>/ (rerun the command to resume), its curve to
out/data/train_<name>.csv, its accuracy by number of operations, on train-template and held-out
test-template problems, to out/data/igsm-accuracy_<name>.csv. V-probe it with
probe_synthetic.py --probe vprobe --threads 1 --run out/runs/<name>.

With --finetune-from, each --finetune method x --retry p fine-tunes that finished run (its architecture
and seed; --steps, --batch, --lr are the fine-tuning's, full fine-tuning takes lr/3) into
out/runs/<start>-ft<method>-retry<p>-s<steps>/, grading --eval problems per split (training and test
templates) at step 0 and every --curve-every steps into out/data/igsm-finetune_<name>.csv.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pandas as pd
import torch

from layerprobe import parallel
from layerprobe.cli import run
from layerprobe.errors import LayerprobeError
from layerprobe.results import read_results
from layerprobe.synthetic import igsm, igsm_finetune, igsm_lm
from layerprobe.synthetic.igsm_runs import IGSMRun, curve_table, grade_run, load_run, train_igsm, width_for_budget
from layerprobe.synthetic.script_args import add_canon_arg, add_compute_args, compute_device
from layerprobe.synthetic.train import n_parameters

QUICK = dict(layers=2, width=32, steps=20, batch=8, curve_every=20)
"""--quick: a smoke-test size (seconds) for scripts/run_all.sh."""


def parse(argv: list[str] | None) -> argparse.Namespace:
    defaults = IGSMRun()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default=defaults.arch, choices=["llama", "gpt2"])
    parser.add_argument("--steps", type=int, default=None,
                        help=f"training steps (default {defaults.steps}; {igsm_finetune.FINETUNE_STEPS} with --finetune-from)")
    for flag, kind, help_text in [("layers", int, "transformer blocks"), ("width", int, "hidden size"),
                                  ("heads", int, "attention heads"),
                                  ("batch", int, "problems per step"), ("lr", float, "peak learning rate"),
                                  ("seed", int, "seed of the weights, the problems and the batches")]:
        parser.add_argument(f"--{flag}", type=kind, default=getattr(defaults, flag), help=f"{help_text} (default %(default)s)")
    parser.add_argument("--preset", default=defaults.preset, choices=sorted(igsm.PRESETS),
                        help="problem sizes (default %(default)s: 2-3 layers of 2-4 items, <=6 parameters, 1-3 operations, "
                             "mod 5, letters and operands in solution order, short steps; paper: mod 23, random "
                             "letters, operands in any order)")
    parser.add_argument("--retry", type=float, nargs="+", default=[0.0],
                        help="retry probabilities p, one model each (part 2.2; e.g. 0 0.1 0.5)")
    parser.add_argument("--mask-mistakes", action="store_true",
                        help="no loss on a retry's mistake tokens (its [BACK] stays trained); default: loss on everything")
    parser.add_argument("--detour", type=float, default=defaults.detour,
                        help="probability, before each solution step, of a detour: the correct step of a parameter the "
                             "answer does not need, in the context only (no loss on it; default %(default)s)")
    parser.add_argument("--detour-body", action="store_true",
                        help="with --detour: train a detour's step except its parameter's name (letter, operands, "
                             "values), so an unneeded step the model begins is written right; the choice stays untrained")
    parser.add_argument("--curriculum", type=float, default=defaults.curriculum,
                        help="share of the steps, the first ones, on 1-operation problems only (default %(default)s)")
    parser.add_argument("--curriculum-ops", type=int, choices=[0, 1], default=defaults.curriculum_ops,
                        help="the curriculum's problems have this many to 1 operations (0: also questions about a "
                             "constant, pure lookups in the problem text; default %(default)s)")
    parser.add_argument("--curve-every", type=int, default=defaults.curve_every,
                        help="steps between the checkpoints graded for the learning curve (default: steps/10)")
    parser.add_argument("--depths", type=int, nargs="+", default=None,
                        help="depth-vs-width sweep: one model per depth, width chosen for the parameter count of --layers/--width")
    parser.add_argument("--eval", type=int, default=60, help="problems graded per split (default %(default)s)")
    parser.add_argument("--finetune-from", default=None,
                        help="a finished error-free run folder to fine-tune on retry data (part 2.2) instead of training")
    parser.add_argument("--finetune", nargs="+", default=None,
                        help=f"with --finetune-from: methods, one run each: full or lora<rank> (default {' '.join(igsm_finetune.METHODS)})")
    add_canon_arg(parser, default=defaults.canon)
    parser.add_argument("--quick", action="store_true", help="tiny model and few steps: a smoke test")
    add_compute_args(parser, threads=2)
    args = parser.parse_args(argv)
    if any(not 0 <= p < 1 for p in args.retry):
        raise LayerprobeError(f"--retry takes probabilities in [0, 1), got {args.retry}")
    if args.depths and min(args.depths) < 1:
        raise LayerprobeError(f"--depths takes positive layer counts, got {args.depths}")
    if not 0 <= args.detour < 1:
        raise LayerprobeError(f"--detour takes a probability in [0, 1), got {args.detour}")
    if args.detour_body and not args.detour:
        raise LayerprobeError("--detour-body needs --detour p > 0 (it says how a detour is trained)")
    if not 0 <= args.curriculum < 1:
        raise LayerprobeError(f"--curriculum takes a share of the steps in [0, 1), got {args.curriculum}")
    if args.curve_every < 0:
        raise LayerprobeError(f"--curve-every must be >= 0, got {args.curve_every}")
    if args.eval < 1:
        raise LayerprobeError(f"--eval must be positive, got {args.eval}")
    if args.steps is None:
        args.steps = igsm_finetune.FINETUNE_STEPS if args.finetune_from else defaults.steps
    if args.finetune and not args.finetune_from:
        raise LayerprobeError("--finetune needs --finetune-from <finished run folder>")
    if args.finetune_from:
        if args.depths:
            raise LayerprobeError("--depths trains from scratch: it does not go with --finetune-from")
        if args.detour:
            raise LayerprobeError("--detour trains from scratch: it does not go with --finetune-from")
        args.finetune = args.finetune or list(igsm_finetune.METHODS)
        for method in args.finetune:
            igsm_finetune.lora_rank(method)
    return args


def planned_runs(args: argparse.Namespace) -> list[IGSMRun]:
    values = {name: getattr(args, name) for name in ("arch", "layers", "width", "heads", "steps", "batch", "lr", "seed", "preset",
                                                 "canon", "curriculum", "curriculum_ops", "mask_mistakes", "detour",
                                                 "detour_body", "curve_every")}
    if args.quick:
        values.update(QUICK)
    base = IGSMRun(**values)
    runs = [dataclasses.replace(base, retry=p) for p in args.retry]
    if args.depths:
        vocab_size = len(igsm_lm.make_vocab())
        with torch.device("meta"):
            budget = n_parameters(base.build(vocab_size))
        runs += [dataclasses.replace(base, layers=depth, width=width_for_budget(base, depth, budget, vocab_size))
                 for depth in args.depths]
    return list(dict.fromkeys(runs))


def finetune(args: argparse.Namespace, device: str) -> None:
    """Part 2.2: fine-tune the --finetune-from run by each method on each retry rate; print the curves."""
    start, _ = load_run(Path(args.finetune_from))
    sizes = {name: getattr(args, name) for name in ("steps", "batch", "curve_every")}
    if args.quick:
        sizes.update({name: QUICK[name] for name in sizes})
    levels = start.config().ops[1] - start.config().ops[0] + 1
    n_per_ops = max(1, (6 if args.quick else args.eval) // levels)
    frames = []
    for p in args.retry:
        for method in args.finetune:
            spec = igsm_finetune.finetune_spec(start, method, p, lr=args.lr, mask_mistakes=args.mask_mistakes, **sizes)
            igsm_finetune.finetune_igsm(Path(args.finetune_from), spec, Path(args.out), Path(args.data), n_per_ops, device=device)
            if parallel.is_main():
                frames.append(read_results(Path(args.data) / f"{igsm_finetune.TASK}_{spec.name()}.csv"))
    if not parallel.is_main():
        return
    rows = pd.concat(frames)
    rows = rows[rows["subtask"].str.endswith("/all") & rows["metric"].isin(["accuracy", "retry_share"])]
    table = rows.pivot_table(index=["retry", "finetune", "trainable_params", "step"], columns=["language", "metric"], values="value")
    print(table.round(3).to_string())


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    device = compute_device(args)
    if args.finetune_from:
        finetune(args, device)
        return
    n_eval = 6 if args.quick else args.eval
    summary = []
    for spec in planned_runs(args):
        lm = train_igsm(spec, Path(args.out), Path(args.data), device=device)
        if not parallel.is_main():  # the main process grades; the others wait for it in the next run's training
            continue
        curve = curve_table(spec, Path(args.data))
        if curve is not None:
            print(f"learning curve of {spec.name()} (training-template problems):")
            print(curve.round(3).to_string(index=False))
        path = grade_run(lm, spec, Path(args.data), n_eval)
        frame = read_results(path)
        summary.append(frame[frame["subtask"].str.endswith("/all")])
    if not parallel.is_main():
        return
    table = pd.concat(summary).pivot_table(index=["model", "language"], columns="metric", values="value")
    print(table.round(3).to_string())


if __name__ == "__main__":
    run(main)
