"""Evaluate and probe models trained by train_synthetic.py, layer by layer.

    python probe_synthetic.py --run out/runs/cfg-small-llama
    python probe_synthetic.py --run out/runs/bios-mixed-aug-llama --run out/runs/bios-pretrain-finetune-aug-llama
    python probe_synthetic.py --probe vprobe --threads 1 --run out/runs/igsm-cpu-llama-canonA-l4w128-retry0-s24000-c0.25

CFG runs: generation accuracy (share of sampled strings the CYK checker accepts) from the root and
from a cut prefix, diversity, and linear probes per layer for the ancestor and span-end label of
every level, on the trained model and on a random model of the same shape.
bioS runs: QA accuracy on QA-train and QA-test people, and P-/Q-probes per layer; part-3.2 runs
(train_synthetic.py --finetune ...): their manipulation tasks, decoded greedily, per split (final
answer, exact answer, majority baseline, each part of a dual or CoT answer), instead of the probes.
iGSM runs of train_igsm.py (--probe vprobe): V-probes per layer for nece, can_next, dep and error
(frozen model + rank-8 embedding update + linear head, fitted on training templates, scored on
held-out ones), on the trained model and a random twin.
Writes out/data/<cfg|bios|igsm>_<run>.csv (schema rows; rerun to resume).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from layerprobe.cli import run
from layerprobe.errors import LayerprobeError
from layerprobe.results import ResultsFile
from layerprobe.synthetic import igsm_runs
from layerprobe.synthetic.report import ProbeOptions, bios_report, cfg_report
from layerprobe.synthetic.runs import load_run, random_twin
from layerprobe.synthetic.vprobe import LABELS, vprobe_report


def parse(argv: list[str] | None) -> argparse.Namespace:
    defaults = ProbeOptions()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="a run folder of train_synthetic.py (repeatable)")
    parser.add_argument("--samples", type=int, default=defaults.samples, help="cfg: generated strings per condition (default %(default)s)")
    parser.add_argument("--cut", type=int, default=None, help="cfg: prefix length to complete (default: half the shortest string)")
    parser.add_argument("--strings", type=int, default=defaults.strings, help="cfg: strings for the probes (default %(default)s)")
    parser.add_argument("--positions", type=int, default=defaults.positions, help="cfg: positions per string (default %(default)s)")
    parser.add_argument("--folds", type=int, default=defaults.folds)
    parser.add_argument("--probe", default="auto", choices=["auto", "vprobe"],
                        help="auto: each world's evaluation (V-probes for iGSM runs); vprobe: insist on iGSM runs")
    parser.add_argument("--labels", nargs="+", default=list(LABELS), choices=LABELS, help="igsm: V-probe labels (default: all)")
    parser.add_argument("--problems", type=int, default=120, help="igsm: problems to fit each V-probe on (default %(default)s)")
    parser.add_argument("--test-problems", type=int, default=60,
                        help="igsm: held-out-template problems to score each V-probe on (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=4, help="igsm: passes over the V-probe's examples (default %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--quick", action="store_true", help="few samples, strings and folds: a smoke test")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--out", default="out/data", help="output folder (default %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    options = ProbeOptions(samples=args.samples, cut=args.cut, strings=args.strings, positions=args.positions,
                           folds=args.folds, seed=args.seed)
    if args.quick:
        options = ProbeOptions(samples=20, cut=args.cut, strings=40, positions=4, folds=3, seed=args.seed)
    for folder in args.run:
        if (Path(folder) / igsm_runs.RUN_FILE).exists():
            spec, lm = igsm_runs.load_run(Path(folder), device=device)
            results = ResultsFile(Path(args.out) / f"igsm_{lm.name}.csv")
            vprobe_report(lm, spec.config(), results, args.labels, args.problems, args.test_problems, args.epochs, args.seed)
            print(f"{lm.name}: wrote {results.path}")
            continue
        if args.probe == "vprobe":
            raise LayerprobeError(f"{folder}: V-probes need an iGSM run of train_igsm.py (with {igsm_runs.RUN_FILE})")
        config, lm = load_run(folder, device=device)
        results = ResultsFile(Path(args.out) / f"{config.world}_{lm.name}.csv")
        report = cfg_report if config.world == "cfg" else bios_report
        report(config, lm, random_twin(config, lm), results, options)
        print(f"{lm.name}: wrote {results.path}")


if __name__ == "__main__":
    run(main)
