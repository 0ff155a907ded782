"""Canon-layer ablation (Physics of LMs 4.1) on k-hop lookup: no Canon, A only and ABCD, at several depths.

    python train_canon.py                                   # 2 and 4 layers x none/A/ABCD, 1500 steps each
    python train_canon.py --depths 1 2 4 8 --canon none A AC ABCD --hops 4 --nodes 16 --steps 20000 \\
        --width 256 --batch 128                             # larger, for a GPU

Each run goes to out/runs/<name>/ (rerun the command to resume), its curve to out/data/train_<name>.csv,
its accuracy per hop count (with parameter count and training CPU seconds) to
out/data/canon-khop_<name>.csv. A run folder loads with layerprobe.synthetic.train.load_trained, and
its model/ folder like any Llama for the engine, lenses and probes (model type canon_llama).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pandas as pd

from layerprobe import parallel
from layerprobe.cli import run
from layerprobe.errors import LayerprobeError
from layerprobe.results import read_results
from layerprobe.synthetic.khop import KHopRun, train_and_grade
from layerprobe.synthetic.script_args import add_canon_arg, add_compute_args, compute_device

QUICK = dict(width=32, steps=20, batch=8)
"""--quick: a smoke-test size (seconds) for scripts/run_all.sh."""


def parse(argv: list[str] | None) -> argparse.Namespace:
    defaults = KHopRun()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 4], help="layer counts (default 2 4)")
    add_canon_arg(parser, many=True)
    for flag, kind, help_text in [("width", int, "hidden size"), ("heads", int, "attention heads"),
                                  ("nodes", int, "edges per document"), ("pool", int, "node symbols"),
                                  ("hops", int, "largest hop count asked"), ("queries", int, "questions per document"),
                                  ("steps", int, "training steps"), ("batch", int, "documents per step"),
                                  ("lr", float, "peak learning rate"), ("seed", int, "seed of the weights and the data")]:
        parser.add_argument(f"--{flag}", type=kind, default=getattr(defaults, flag), help=f"{help_text} (default %(default)s)")
    parser.add_argument("--eval", type=int, default=256, help="held-out documents graded per run (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny model and few steps: a smoke test")
    add_compute_args(parser)
    args = parser.parse_args(argv)
    if min(args.depths + [args.width, args.heads, args.nodes, args.hops, args.queries, args.steps, args.batch,
                          args.eval]) < 1 or args.lr <= 0:
        raise LayerprobeError("--depths, --width, --heads, --nodes, --hops, --queries, --steps, --batch, --eval "
                              "and --lr must be positive")
    if args.nodes > args.pool:
        raise LayerprobeError(f"--nodes {args.nodes} needs a --pool of at least as many symbols, got {args.pool}")
    return args


def planned_runs(args: argparse.Namespace) -> list[KHopRun]:
    values = {name: getattr(args, name) for name in ("width", "heads", "nodes", "pool", "hops", "queries", "steps",
                                                     "batch", "lr", "seed")}
    if args.quick:
        values.update(QUICK)
    base = KHopRun(**values)
    return [dataclasses.replace(base, layers=depth, canon=canon) for depth in args.depths for canon in args.canon]


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    device = compute_device(args)
    n_eval = 16 if args.quick else args.eval
    paths = [train_and_grade(spec, Path(args.out), Path(args.data), n_eval, device=device) for spec in planned_runs(args)]
    if not parallel.is_main():
        return
    print(summary_table(pd.concat([read_results(path) for path in paths])).to_string())


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per hop count and overall, with parameters and training CPU seconds, one line per run."""
    rows = rows.assign(hop=[subtask.split("/")[-1] for subtask in rows["subtask"]])
    table = rows.pivot_table(index=["n_layers", "canon", "n_params", "train_cpu_s"], columns="hop", values="value")
    return table.round(3).reset_index().rename_axis(columns=None)


if __name__ == "__main__":
    run(main)
