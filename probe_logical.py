"""Study 1, logical reasoning: per-layer accuracy on 4-option deductive problems.

Built-in: generated conditional chains, syllogisms over made-up categories and height orderings,
each option checked by model enumeration (layerprobe/tasks/logical.py). --limit counts problems
per kind (default 24). --data reads ReClor (its JSON, or JSON lines / Parquet / hf:ID with the same columns) instead. Output: <out>/logical_<model>.csv (task "logical",
subtask = kind, plus "all"; "reclor" for --data).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from layerprobe.cli import run
from layerprobe.study1 import study1_main
from layerprobe.tasks.base import MCItem
from layerprobe.tasks.logical import load_reclor_json, logical_items
from layerprobe.tasks.schemas import read_data

DEFAULT_PER_KIND = 24


def build_tasks(args: argparse.Namespace, limit: int) -> dict[str, list[MCItem]]:
    if args.data:
        rows, _ = read_data(args.data, "probe_logical.py")
        return {"logical": load_reclor_json(rows, limit, args.seed)}
    return {"logical": logical_items(limit, args.seed)}


def main(argv: Sequence[str] | None = None) -> list[Path]:
    return study1_main(argv, __doc__, "logical", DEFAULT_PER_KIND, build_tasks)


if __name__ == "__main__":
    run(main)
