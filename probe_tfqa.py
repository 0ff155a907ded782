"""Study 1, truthfulness: per-layer MC1, MC2 and MC3 as TruthfulQA defines them.

Built-in: 64 questions about common misconceptions written by the project
(layerprobe/tasks/truthfulness.py). --data reads TruthfulQA.csv, mc_task.json or the Hugging Face truthful_qa schemas
(multiple_choice, generation; Parquet, JSON lines or hf:truthful_qa:multiple_choice:validation), told by
their columns.
Output: <out>/truthfulqa_<model>.csv (task "truthfulqa", metrics mc1, mc2, mc3; the probe
reports accuracy at picking a true answer, and its control).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from layerprobe.cli import run
from layerprobe.study1 import study1_main
from layerprobe.tasks.base import MCItem
from layerprobe.tasks.schemas import read_data
from layerprobe.tasks.truthfulness import load_truthfulqa, truthfulness_items

DEFAULT_QUESTIONS = 64


def build_tasks(args: argparse.Namespace, limit: int) -> dict[str, list[MCItem]]:
    if args.data:
        rows, _ = read_data(args.data, "probe_tfqa.py")
        return {"truthfulqa": load_truthfulqa(rows, limit, args.seed)}
    return {"truthfulqa": truthfulness_items(limit, args.seed)}


def main(argv: Sequence[str] | None = None) -> list[Path]:
    return study1_main(argv, __doc__, "truthfulqa", DEFAULT_QUESTIONS, build_tasks)


if __name__ == "__main__":
    run(main)
