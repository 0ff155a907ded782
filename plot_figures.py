"""Draw every figure the CSVs in out/data allow and write out/report.html; never loads a model.

Example: python plot_figures.py                     (out/data -> out/figures, out/report.html)
         python plot_figures.py --formats png,pdf --dpi 600
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from layerprobe.cli import run
from layerprobe.errors import LayerprobeError
from layerprobe.plots import draw_all
from layerprobe.plots.common import Canvas, Drawn, Skipped, load_data
from layerprobe.report import write_report

FORMATS = ("png", "svg", "pdf")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="out/data", help="folder of results CSVs (default out/data)")
    parser.add_argument("--out", default="out/figures", help="folder for the figure files (default out/figures)")
    parser.add_argument("--report", default=None, help="HTML report path (default: report.html next to --out)")
    parser.add_argument("--dpi", type=int, default=300, help="PNG resolution (default 300, print quality)")
    parser.add_argument("--formats", default="png,svg", help=f"comma-separated, from {', '.join(FORMATS)} (default png,svg)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    formats = tuple(f.strip().lower() for f in args.formats.split(",") if f.strip())
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or "png" not in formats:
        raise LayerprobeError(f"--formats must include png and may add {', '.join(FORMATS[1:])}; got '{args.formats}'")
    if args.dpi < 50:
        raise LayerprobeError(f"--dpi must be at least 50; got {args.dpi}")
    data = load_data(args.data)
    if not data.files:
        print(f"no CSV files in {args.data}: nothing to draw yet")
    canvas = Canvas(Path(args.out), dpi=args.dpi, formats=formats)
    outcomes = draw_all(data, canvas, progress=lambda builders: tqdm(builders, desc="figure groups", unit="group"))
    report = Path(args.report) if args.report else Path(args.out).parent / "report.html"
    settings = {"command": " ".join(["plot_figures.py", *(argv if argv is not None else sys.argv[1:])]),
                "data folder": args.data, "figures folder": args.out, "PNG dpi": args.dpi, "formats": ", ".join(formats)}
    write_report(data, outcomes, report, settings)
    drawn = [o for o in outcomes if isinstance(o, Drawn)]
    for skipped in (o for o in outcomes if isinstance(o, Skipped)):
        print(f"skipped {skipped.name}: {skipped.reason}")
    print(f"drew {len(drawn)} figures in {args.out}; report: {report}")


if __name__ == "__main__":
    run(main)
