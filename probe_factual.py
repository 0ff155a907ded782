"""Study 1, factual knowledge: per-layer accuracy on cloze facts (capital, currency, continent, ...).

Built-in: the project's fact table (layerprobe/tasks/factual.py), the true object among ~10 objects
of the same relation, three same-relation demonstrations. --limit counts items per relation
(default 10).
--data reads a LAMA-style TSV instead (rows that cannot be scored are skipped with one warning). Output: <out>/factual_<model>.csv (task "factual",
subtask = relation, plus "all").
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from layerprobe.cli import run
from layerprobe.study1 import study1_main
from layerprobe.tasks.base import MCItem
from layerprobe.tasks.factual import RELATIONS, factual_items, load_lama_tsv
from layerprobe.tasks.schemas import read_data

DEFAULT_PER_RELATION = 10


def build_tasks(args: argparse.Namespace, limit: int) -> dict[str, list[MCItem]]:
    if args.data:
        rows, _ = read_data(args.data, "probe_factual.py")
        return {"factual": load_lama_tsv(rows, limit, args.seed)}
    return {"factual": factual_items(limit * len(RELATIONS), args.seed)}


def main(argv: Sequence[str] | None = None) -> list[Path]:
    return study1_main(argv, __doc__, "factual", DEFAULT_PER_RELATION, build_tasks)


if __name__ == "__main__":
    run(main)
