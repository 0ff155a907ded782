"""Evaluate and probe models trained by train_synthetic.py, layer by layer.

    python probe_synthetic.py --run out/runs/cfg-small-llama
    python probe_synthetic.py --run out/runs/bios-mixed-aug-llama --run out/runs/bios-pretrain-finetune-aug-llama

CFG runs: generation accuracy (share of sampled strings the CYK checker accepts) from the root and
from a cut prefix, diversity, and linear probes per layer for the ancestor and span-end label of
every level, on the trained model and on a random model of the same shape.
bioS runs: QA accuracy on QA-train and QA-test people, part-3.2 tasks (birth year alone, birth-month
parity with and without chain of thought, inverse search), and P-/Q-probes per layer.
Writes out/data/<cfg|bios>_<run>.csv (schema rows; rerun to resume).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from layerprobe.cli import run
from layerprobe.results import ResultsFile
from layerprobe.synthetic.report import ProbeOptions, bios_report, cfg_report
from layerprobe.synthetic.runs import load_run, random_twin


def parse(argv: list[str] | None) -> argparse.Namespace:
    defaults = ProbeOptions()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="a run folder of train_synthetic.py (repeatable)")
    parser.add_argument("--samples", type=int, default=defaults.samples, help="cfg: generated strings per condition (default %(default)s)")
    parser.add_argument("--cut", type=int, default=None, help="cfg: prefix length to complete (default: half the shortest string)")
    parser.add_argument("--strings", type=int, default=defaults.strings, help="cfg: strings for the probes (default %(default)s)")
    parser.add_argument("--positions", type=int, default=defaults.positions, help="cfg: positions per string (default %(default)s)")
    parser.add_argument("--folds", type=int, default=defaults.folds)
    parser.add_argument("--seed", type=int, default=defaults.seed)
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
    for folder in args.run:
        config, lm = load_run(folder, device=device)
        results = ResultsFile(Path(args.out) / f"{config.world}_{lm.name}.csv")
        report = cfg_report if config.world == "cfg" else bios_report
        report(config, lm, random_twin(config, lm), results, options)
        print(f"{lm.name}: wrote {results.path}")


if __name__ == "__main__":
    run(main)
