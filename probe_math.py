"""Study 1, arithmetic and math word problems: per-layer accuracy.

Subtasks (--subtask, default all):
  calculation  expressions over the grid op x digits x type (layerprobe/tasks/calculation.py);
               --limit counts items per grid cell (36 cells)
  mps-cal      word problems, correct solution vs solutions with one arithmetic error
  mps-rea      word problems, correct solution vs solutions with one reasoning error
  xmps-cal     mps-cal in en, es, fr, de, zh, ja (same problems); --limit counts problems
  xmps-rea     mps-rea in the same six languages
--data reads a file for one mps/xmps subtask: GSM8K ({question, answer}: JSONL, Parquet or
hf:openai/gsm8k:main:test) or study-1 MPS JSONL ({question, truth_answer, error}); for xmps give its
--language.
Defaults without --limit: calculation 1 item per cell, mps 4 problems each, xmps 2 problems per
language: minutes on 2 CPU cores; raise --limit on a GPU.
Output: <out>/math_<model>.csv (task = subtask name).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from layerprobe.cli import run
from layerprobe.errors import LayerprobeError
from layerprobe.study1 import study1_main
from layerprobe.tasks.base import MCItem
from layerprobe.tasks.calculation import calculation_items
from layerprobe.tasks.mps import load_gsm8k_jsonl, load_mps_jsonl, mps_items
from layerprobe.tasks.schemas import read_data
from layerprobe.tasks.xmps import xmps_items

SUBTASKS = ["calculation", "mps-cal", "mps-rea", "xmps-cal", "xmps-rea"]
DEFAULT_COUNT = {"calculation": 1, "mps-cal": 4, "mps-rea": 4, "xmps-cal": 2, "xmps-rea": 2}
"""Default --limit per subtask: calculation per grid cell, xmps problems per language."""


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subtask", choices=SUBTASKS + ["all"], default="all", help="which subtask(s) (default all)")
    parser.add_argument("--language", default="en", help="language code of a cross-lingual --data file (default en)")


def _from_file(args: argparse.Namespace, limit: int) -> dict[str, list[MCItem]]:
    if args.subtask not in SUBTASKS[1:]:
        raise LayerprobeError("--data needs --subtask mps-cal, mps-rea, xmps-cal or xmps-rea")
    rows, schema = read_data(args.data, "probe_math.py")
    kind = args.subtask.split("-")[1]
    if schema is not None and schema.name == "study-1 MPS JSONL":
        language = args.language if args.subtask.startswith("xmps") else "en"
        return {args.subtask: load_mps_jsonl(rows, limit, args.seed, language=language)}
    return {args.subtask: load_gsm8k_jsonl(rows, limit, args.seed, kind=kind)}


def build_tasks(args: argparse.Namespace, limit: int | None) -> dict[str, list[MCItem]]:
    if args.data:
        return _from_file(args, limit)
    chosen = SUBTASKS if args.subtask == "all" else [args.subtask]
    tasks = {}
    for subtask in chosen:
        count = limit if limit is not None else DEFAULT_COUNT[subtask]
        if subtask == "calculation":
            tasks[subtask] = calculation_items(count, args.seed)
        elif subtask.startswith("xmps"):
            tasks[subtask] = xmps_items(count, args.seed, kind=subtask.split("-")[1])
        else:
            tasks[subtask] = mps_items(count, args.seed, kind=subtask.split("-")[1])
    return tasks


def main(argv: Sequence[str] | None = None) -> list[Path]:
    return study1_main(argv, __doc__, "math", None, build_tasks, add_args)


if __name__ == "__main__":
    run(main)
