"""Flags that the iGSM and capacity scripts share: where to compute and where run folders and CSVs go."""

from __future__ import annotations

import argparse

import torch


def add_compute_args(parser: argparse.ArgumentParser, run_folders: bool = True) -> None:
    """--threads, --device and, for training scripts, --out (run folders) and --data (CSVs)."""
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch (default 1: on the shared 2-core CPU two threads ran up to 15x slower)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    if run_folders:
        parser.add_argument("--out", default="out/runs", help="folder of the run folders (default %(default)s)")
        parser.add_argument("--data", default="out/data", help="folder of the CSVs (default %(default)s)")


def compute_device(args: argparse.Namespace) -> str:
    """Apply --threads; the device to run on."""
    torch.set_num_threads(args.threads)
    return args.device or ("cuda" if torch.cuda.is_available() else "cpu")
