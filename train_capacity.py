"""Knowledge capacity (Physics of LMs 3.3): bits stored per parameter vs model size and exposures.

    python train_capacity.py                                  # 1000 people, 3 sizes x exposures 10 and 30
    python train_capacity.py --sizes 2x64 4x128 --exposures 100 1000 --people 20000   # the paper's regime, GPU

Each (size, exposures) model trains on a bioD-style population whose knowledge is exactly
N * sum_k log2(T_k) bits, then its loss on the attribute values gives the learned bits, divided by
the parameter count, in fp32 and after int8 and int4 quantisation: out/data/capacity_n<people>.csv.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from layerprobe import parallel
from layerprobe.cli import run
from layerprobe.errors import LayerprobeError
from layerprobe.results import ResultsFile
from layerprobe.synthetic.capacity import CapacityConfig, CapacityRun, known_bits, train_and_measure
from layerprobe.synthetic.script_args import add_compute_args, compute_device

QUICK = dict(people=40, sizes=[(1, 16)], exposures=[2])


def size(text: str) -> tuple[int, int]:
    """"2x32" -> (2 layers, width 32)."""
    try:
        layers, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size is LAYERSxWIDTH, e.g. 2x32, not {text!r}") from None
    return layers, width


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=1000, help="population size N (default %(default)s)")
    parser.add_argument("--values", type=int, nargs="+", default=list(CapacityConfig.value_sizes),
                        help="value-space size T_k of each attribute (default %(default)s)")
    parser.add_argument("--sizes", nargs="+", type=size, default=[(1, 16), (1, 32), (2, 32)],
                        help="model sizes LAYERSxWIDTH (default 1x16 1x32 2x32)")
    parser.add_argument("--exposures", type=int, nargs="+", default=[10, 30], help="passes over the population (default %(default)s)")
    parser.add_argument("--heads", type=int, default=2, help="attention heads (default %(default)s)")
    parser.add_argument("--batch", type=int, default=64, help="people per step (default %(default)s)")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the population, weights and order (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="one tiny model, 40 people, 2 exposures: a smoke test")
    add_compute_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update(QUICK)
    if args.people < 2 or min(args.values) < 2 or min(args.exposures) < 1:
        raise LayerprobeError("--people and every --values need at least 2, --exposures at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    device = compute_device(args)
    results = ResultsFile(Path(args.data) / f"capacity_n{args.people}.csv")
    for layers, width in args.sizes:
        if width % (2 * args.heads):
            raise LayerprobeError(f"width {width} must be a multiple of twice the {args.heads} heads (rotary)")
        for exposures in args.exposures:
            spec = CapacityRun(layers, width, exposures, args.people, tuple(args.values), args.heads, args.batch, args.lr, args.seed)
            train_and_measure(spec, Path(args.out), results, Path(args.data), device=device)
    if not parallel.is_main():
        return
    frame = results.frame
    print(f"known bits: {known_bits(args.people, args.values):,.0f}")
    print(frame[["model", "method", "n_params", "exposures", "learned_bits", "value"]].round(3).to_string(index=False))


if __name__ == "__main__":
    run(main)
