"""The results CSV: schema, atomic rewrite, resume without lost or duplicated rows, intervals."""

import multiprocessing

import numpy as np
import pandas as pd
import pytest

from layerprobe.errors import DataError
from layerprobe.results import COLUMNS, ResultsFile, layer_rows, read_results, wilson_interval


def unit_rows(subtask, value):
    return layer_rows(np.full((3, 10), value), metric="accuracy", model="m", task="t", method="lens-norm",
                      subtask=subtask)


def run(path, subtasks, crash_after=None):
    results = ResultsFile(path)
    for number, subtask in enumerate(subtasks):
        if results.done(model="m", task="t", subtask=subtask, method="lens-norm"):
            continue
        if crash_after is not None and number == crash_after:
            raise KeyboardInterrupt
        results.add(unit_rows(subtask, number % 2))
    return results


def test_interrupted_run_resumes_to_the_same_csv(tmp_path):
    subtasks = ["a", "b", "c", "d"]
    run(tmp_path / "full.csv", subtasks)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed.csv", subtasks, crash_after=2)
    assert len(pd.read_csv(tmp_path / "resumed.csv")) == 2 * 3  # two finished units, whole
    run(tmp_path / "resumed.csv", subtasks)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "full.csv"), pd.read_csv(tmp_path / "resumed.csv"))
    assert not list(tmp_path.glob(".*tmp"))


def test_rewriting_a_unit_replaces_it(tmp_path):
    results = ResultsFile(tmp_path / "r.csv")
    results.add(unit_rows("a", 0))
    results.add(unit_rows("a", 1))
    frame = read_results(tmp_path / "r.csv")
    assert len(frame) == 3 and frame["value"].eq(1.0).all()
    assert list(frame.columns[: len(COLUMNS)]) == COLUMNS


def test_two_writers_keep_each_others_rows(tmp_path):
    """Two ResultsFile objects on one CSV (two scripts sharing out/data): each takes in the other's rows."""
    first, second = ResultsFile(tmp_path / "r.csv"), ResultsFile(tmp_path / "r.csv")
    first.add(unit_rows("a", 0))
    second.add(unit_rows("b", 1))
    first.add(unit_rows("a", 1))
    frame = read_results(tmp_path / "r.csv")
    assert sorted(frame["subtask"].unique()) == ["a", "b"] and len(frame) == 6 and frame["value"].eq(1.0).all()
    assert second.done(model="m", task="t", subtask="b", method="lens-norm")


def _write_units(path, prefix):
    results = ResultsFile(path)
    for number in range(25):
        results.add(unit_rows(f"{prefix}{number}", 0))


def test_two_processes_writing_at_once_lose_no_rows(tmp_path):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_units, args=(tmp_path / "r.csv", prefix)) for prefix in "xy"]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    frame = read_results(tmp_path / "r.csv")
    assert frame["subtask"].nunique() == 50 and len(frame) == 50 * 3


def test_wrong_schema_names_file_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("model,task\nm,t\n")
    with pytest.raises(DataError, match=r"bad.csv, line 1, field 'subtask': missing column"):
        read_results(path)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty file"):
        read_results(tmp_path / "empty.csv")


def test_wilson_interval_known_values():
    low, high = wilson_interval(np.array([8]), 10)  # textbook: 0.490 .. 0.943
    assert low[0] == pytest.approx(0.4902, abs=1e-3) and high[0] == pytest.approx(0.9433, abs=1e-3)
    low, high = wilson_interval(np.array([0]), 20)
    assert low[0] == 0 and high[0] == pytest.approx(0.1611, abs=1e-3)
