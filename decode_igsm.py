"""Regret-and-retry decoding against greedy and beam search on a trained iGSM model (Physics of LMs 2.2).

    python train_igsm.py --retry 0                                   # the error-free model first
    python decode_igsm.py --run out/runs/igsm-cpu-llama-canonA-l4w128-retry0-s24000-c0.25
    python decode_igsm.py --run ... --beam 8 --budget 8 --eval 120  # more beams, retries, problems

A rank-0 V-probe `error` head is fitted on the model's hidden states over retry data (is the step
being written a mistake that [BACK] undoes?); regret-and-retry writes the solution step by step and
resamples a step the probe flags, up to --budget times. All three methods solve the same --eval
train-template and --eval test-template problems. Writes out/data/igsm-decode_<run>.csv: accuracy,
step_share and retry_share by number of operations, forward passes (tokens decoded, discarded and
beam ones included) per method; rerun to resume.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from layerprobe.cli import run
from layerprobe.errors import LayerprobeError
from layerprobe.results import ResultsFile, read_results
from layerprobe.synthetic import igsm_runs
from layerprobe.synthetic.igsm_decode import DecodeOptions, decode_report
from layerprobe.synthetic.script_args import add_compute_args, compute_device


def parse(argv: list[str] | None) -> argparse.Namespace:
    defaults = DecodeOptions()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="an iGSM run folder of train_igsm.py (the error-free one: --retry 0)")
    parser.add_argument("--eval", type=int, default=30, help="problems per split, the same for every method (default %(default)s)")
    parser.add_argument("--beam", type=int, default=defaults.beam, help="beam width (default %(default)s)")
    parser.add_argument("--budget", type=int, default=defaults.budget,
                        help="regret-and-retry: resampled steps per solution at most (default %(default)s)")
    parser.add_argument("--temperature", type=float, default=defaults.temperature,
                        help="regret-and-retry: sampling temperature of a resampled step (default %(default)s)")
    parser.add_argument("--probe-problems", type=int, default=120,
                        help="training-template problems the error probe is fitted on (default %(default)s)")
    parser.add_argument("--probe-epochs", type=int, default=4, help="passes over the probe's examples (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the problems, the probe and the resampling")
    parser.add_argument("--data", default="out/data", help="folder of the CSVs (default %(default)s)")
    add_compute_args(parser, run_folders=False)
    args = parser.parse_args(argv)
    for flag in ("eval", "beam", "probe_problems", "probe_epochs"):
        if getattr(args, flag) < 1:
            raise LayerprobeError(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    if args.budget < 0 or args.temperature <= 0:
        raise LayerprobeError(f"--budget must be >= 0 and --temperature > 0, got {args.budget} and {args.temperature}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    device = compute_device(args)
    spec, lm = igsm_runs.load_run(Path(args.run), device=device)
    if spec.retry:
        print(f"note: {spec.name()} was trained on retry data (p = {spec.retry:g}); the paper decodes an error-free model")
    options = DecodeOptions(beam=args.beam, budget=args.budget, temperature=args.temperature)
    results = ResultsFile(Path(args.data) / f"igsm-decode_{lm.name}.csv")
    decode_report(lm, spec.config(), results, spec.layers, args.eval, options, args.probe_problems, args.probe_epochs,
                  args.seed)
    frame = read_results(results.path)
    frame = frame[frame["subtask"].str.endswith("/all") & frame["metric"].isin(["accuracy", "forward_passes", "retry_share"])]
    print(frame.pivot_table(index=["method", "language"], columns="metric", values="value").round(3).to_string())


if __name__ == "__main__":
    run(main)
