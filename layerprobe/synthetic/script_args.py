"""Flags that the iGSM and capacity scripts share: where to compute and where run folders and CSVs go."""

from __future__ import annotations

import argparse

import torch


def add_compute_args(parser: argparse.ArgumentParser, run_folders: bool = True, threads: int = 1) -> None:
    """--threads (default `threads`), --device and, for training scripts, --out (run folders) and --data (CSVs)."""
    why = ("two runs at once on a 2-core CPU with two threads each ran up to 15x slower" if threads == 1 else
           "one run alone on a 2-core CPU trains 1.6x faster than on one; give 1 when running two at once")
    parser.add_argument("--threads", type=int, default=threads, help=f"CPU threads for torch (default {threads}: {why})")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    if run_folders:
        parser.add_argument("--out", default="out/runs", help="folder of the run folders (default %(default)s)")
        parser.add_argument("--data", default="out/data", help="folder of the CSVs (default %(default)s)")


def compute_device(args: argparse.Namespace) -> str:
    """Apply --threads; the device to run on."""
    torch.set_num_threads(args.threads)
    return args.device or ("cuda" if torch.cuda.is_available() else "cpu")


def add_canon_arg(parser: argparse.ArgumentParser, many: bool = False, default: str = "") -> None:
    """--canon: Canon layers at these places of every block, a subset of ABCD (layerprobe.synthetic.canon),
    `default` unless given; `many`: one or more subsets, one run each ("none" for none)."""
    from layerprobe.synthetic.canon import canon_letters

    if many:
        parser.add_argument("--canon", type=_canon_type(canon_letters), nargs="+", default=["", "A", "ABCD"],
                            help="Canon placements, one run each: none, A, AC, ABCD, ... (default none A ABCD)")
    else:
        parser.add_argument("--canon", type=_canon_type(canon_letters), default=default,
                            help=f"Canon layers (llama): any subset of ABCD, e.g. A or ABCD, or none "
                                 f"(default {default or 'none'})")


def _canon_type(letters):
    """argparse's type for --canon: a bad value becomes argparse's one-line usage error."""
    def parse(text: str) -> str:
        try:
            return letters(text)
        except Exception as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return parse
