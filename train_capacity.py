"""Knowledge capacity (Physics of LMs 3.3): bits stored per parameter vs model size and exposures.

    python train_capacity.py                                  # 1000 people, 3 sizes x exposures 10 and 30
    python train_capacity.py --sizes 2x64 4x128 --exposures 100 1000 --people 20000   # the paper's regime, GPU
    python train_capacity.py --people 256 --sizes 1x8 --exposures 300 --junk 7/8 --domain   # junk data, domain token

Each (size, exposures) model trains on a bioD-style population whose knowledge is exactly
N * sum_k log2(T_k) bits, then its loss on the attribute values gives the learned bits, divided by
the parameter count, in fp32 and after int8 and int4 quantisation: out/data/capacity_n<people>.csv.
`--junk 7/8` makes 7 of every 8 training documents junk (biographies of people outside the population,
values drawn afresh each time) while every useful person keeps its exposures; `--domain` puts the token
"wikipedia.org" before every useful biography. Bits are measured on the useful people only.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

from layerprobe import parallel
from layerprobe.cli import run
from layerprobe.errors import LayerprobeError
from layerprobe.results import ResultsFile
from layerprobe.synthetic.capacity import CapacityConfig, CapacityRun, junk_share, known_bits, train_and_measure
from layerprobe.synthetic.script_args import add_compute_args, compute_device

QUICK = dict(people=40, sizes=[(1, 16)], exposures=[2])


def size(text: str) -> tuple[int, int]:
    """"2x32" -> (2 layers, width 32)."""
    try:
        layers, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size is LAYERSxWIDTH, e.g. 2x32, not {text!r}") from None
    return layers, width


def junk(text: str) -> float:
    """--junk: a share of the training documents, 0.875 or 7/8, at least 0 and below 1 (LayerprobeError, one line, if not)."""
    try:
        share = float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise LayerprobeError(f"--junk is a share such as 0.875 or 7/8, not {text!r}") from None
    junk_share(share)
    return share


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
    parser.add_argument("--junk", type=junk, default=0.0,
                        help="share of training documents that are junk biographies, e.g. 7/8 (default 0)")
    parser.add_argument("--domain", action="store_true", help="put a domain token before every useful biography")
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
            spec = CapacityRun(layers, width, exposures, args.people, tuple(args.values), args.heads, args.batch, args.lr,
                               args.seed, junk=args.junk, domain=args.domain)
            train_and_measure(spec, Path(args.out), results, Path(args.data), device=device)
    if not parallel.is_main():
        return
    frame = results.frame
    print(f"known bits: {known_bits(args.people, args.values):,.0f}")
    columns = ["model", "method", "n_params", "exposures"] + ["condition"] * ("condition" in frame.columns)
    print(frame[columns + ["learned_bits", "value"]].round(3).to_string(index=False))


if __name__ == "__main__":
    run(main)
