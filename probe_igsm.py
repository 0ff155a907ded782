"""V-probe iGSM models trained by train_igsm.py, layer by layer (Physics of LMs 2.1, 2.2).

    python probe_igsm.py --run out/runs/igsm-cpu-llama-l4w64-retry0-s300
    python probe_igsm.py --run out/runs/igsm-cpu-llama-l4w64-retry0.5-s300 --labels error

For each label (nece, can_next, dep, error) a frozen model + rank-8 embedding update + linear head
per layer is fitted on problems of training templates and scored on held-out templates, for the
trained model and a randomly initialised twin. Writes out/data/igsm_<run>.csv (rerun to resume).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from layerprobe.cli import run
from layerprobe.results import ResultsFile, read_results
from layerprobe.synthetic.igsm_runs import load_run
from layerprobe.synthetic.script_args import add_compute_args, compute_device
from layerprobe.synthetic.vprobe import LABELS, vprobe_report


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="a run folder of train_igsm.py (repeatable)")
    parser.add_argument("--labels", nargs="+", default=list(LABELS), choices=LABELS, help="labels to probe (default: all)")
    parser.add_argument("--problems", type=int, default=120, help="problems to fit each probe on (default %(default)s)")
    parser.add_argument("--test-problems", type=int, default=60, help="held-out problems to score on (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=4, help="passes over the probe's training examples (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="few problems, one epoch: a smoke test")
    add_compute_args(parser, run_folders=False)
    parser.add_argument("--out", default="out/data", help="output folder (default %(default)s)")
    args = parser.parse_args(argv)
    if args.quick:
        args.problems, args.test_problems, args.epochs = 12, 6, 1
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    device = compute_device(args)
    for folder in args.run:
        spec, lm = load_run(Path(folder), device=device)
        results = ResultsFile(Path(args.out) / f"igsm_{lm.name}.csv")
        vprobe_report(lm, spec.config(), results, args.labels, args.problems, args.test_problems, args.epochs, args.seed)
        frame = read_results(results.path)
        print(frame.pivot_table(index=["subtask", "method"], columns="layer", values="value").round(2).to_string())


if __name__ == "__main__":
    run(main)
