"""Every public schema round-trips: records written with `datasets` (Parquet, JSON lines, a JSON list)
are read back by the script that owns the schema into the items the records describe; a file with
5% bad rows loads, warns once with the count and scores the rest; hub ids fail offline in one line."""

import argparse
import importlib
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from datasets import Dataset
from public_schemas import SCHEMAS, records

from layerprobe.errors import DataError
from layerprobe.tasks.io import parse_hub_id, read_rows
from layerprobe.tasks.schemas import detect, read_data

ROOT = Path(__file__).parent.parent
FORMATS = ["parquet", "jsonl", "json"]


def write(rows: list[dict], path: Path) -> Path:
    dataset = Dataset.from_list(rows)
    if path.suffix == ".parquet":
        dataset.to_parquet(str(path))
    else:
        dataset.to_json(str(path), lines=path.suffix == ".jsonl")
    return path


def script_items(schema, source):
    """The items the schema's own script builds from `source` (its build_tasks, as --data runs it)."""
    script = importlib.import_module(schema.script.removesuffix(".py"))
    args = argparse.Namespace(data=str(source), seed=0, subtask="mps-cal", language="en", style="cloze", shots=0,
                              subjects=None)
    [items] = script.build_tasks(args, None).values()
    return items


def truth_sets(items):
    return Counter((tuple(sorted(c.strip() for i, c in enumerate(item.candidates) if i in item.correct)),
                    tuple(sorted(c.strip() for i, c in enumerate(item.candidates) if i not in item.correct)))
                   for item in items)


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.name)
def test_round_trip(schema, tmp_path):
    good = [schema.good(i) for i in range(8)]
    loaded = [script_items(schema, write(good, tmp_path / f"data.{fmt}")) for fmt in FORMATS]
    assert loaded[0] == loaded[1] == loaded[2] and len(loaded[0]) == len(good)
    assert all(items.skipped_rows == 0 for items in loaded)
    if schema.name == "GSM8K":  # candidates derived from the solution: the true one ends with the final answer
        finals = Counter(r["answer"].rsplit("#### ", 1)[1] for r in good)
        assert Counter(item.candidates[item.correct[0]].rsplit(" ", 1)[1].rstrip(".") for item in loaded[0]) == finals
        return
    expected = Counter((tuple(sorted(schema.true_candidates(r))), tuple(sorted(schema.false_candidates(r)))) for r in good)
    assert truth_sets(loaded[0]) == expected


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.name)
def test_five_percent_bad_rows(schema, fmt, tmp_path, capsys):
    rows, bad_at = records(schema, 38, bad_every=19)
    assert len(rows) == 40 and len(bad_at) == 2
    path = write(rows, tmp_path / f"data.{fmt}")
    capsys.readouterr()  # the writer's progress bars
    items = script_items(schema, path)
    assert len(items) == 38 and items.skipped_rows == 2
    where = ", ".join(str(i) if fmt == "parquet" else str(i + 1) for i in bad_at)  # row index / line number
    warning = capsys.readouterr().err.strip()
    assert warning.count("\n") == 0 and "skipped 2 of 40 rows" in warning
    assert f"{'rows' if fmt == 'parquet' else 'lines'} {where})" in warning


def test_more_than_half_bad_is_an_error(tmp_path):
    schema = SCHEMAS[0]
    rows = [schema.good(0), schema.bad[0], schema.bad[0]]
    path = write(rows, tmp_path / "mmlu.parquet")
    with pytest.raises(DataError) as caught:
        script_items(schema, path)
    assert caught.value.row == 1 and caught.value.field == "answer" and "2 of 3 rows unusable" in str(caught.value)


def test_detection_and_the_wrong_script(tmp_path):
    for schema in SCHEMAS:
        path = write([schema.good(0)], tmp_path / "one.parquet")
        assert detect(read_rows(path)).script == schema.script
    path = write([SCHEMAS[0].good(0)], tmp_path / "mmlu.parquet")
    with pytest.raises(DataError, match=r"are MMLU \(cais/mmlu\): read it with probe_mmlu.py"):
        read_data(path, "probe_tfqa.py")


def test_broken_files_are_one_line_errors(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_text("not parquet", encoding="utf-8")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_rows(path)
    path = tmp_path / "broken.jsonl"
    path.write_text('{"question": "q"}\n{"question": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2: invalid JSON"):
        read_rows(path)
    path = write([{"question": "q", "choices": ["a", "b"]}], tmp_path / "nocol.parquet")
    with pytest.raises(DataError, match=r"row 0, field 'answer': missing column 'answer'"):
        script_items(SCHEMAS[0], path)


def test_hub_id_syntax():
    assert parse_hub_id("hf:cais/mmlu:all:test") == ("cais/mmlu", "all", "test")
    assert parse_hub_id("hub:openai/gsm8k:main") == ("openai/gsm8k", "main", None)
    assert parse_hub_id("hf:ehovy/race") == ("ehovy/race", None, None)


def test_hub_id_offline_is_one_line_naming_the_id(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "LAYERPROBE_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, str(ROOT / "probe_mmlu.py"), "--data", "hf:cais/mmlu:all:test",
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 2 and not (tmp_path / "out").exists()
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: hf:cais/mmlu:all:test: cannot load 'cais/mmlu' from the Hugging Face hub (offline")
