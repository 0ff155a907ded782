"""trace_layers.py end to end: resume after an interruption, the tuned-lens cache, one-line errors, options on
MMLU --data, SmolLM2."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest
from test_trace_options import mmlu_records, write_mmlu
from tiny import OPTION_WORDS, tiny_lm

import trace_layers
from layerprobe import trace
from layerprobe.cli import run
from layerprobe.results import read_results

WORDS = "the river city rose after rain and people walked to a market near old bridge where children played".split()


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    """A tiny llama saved as a model folder, and a text file of 12 paragraphs of 30 words."""
    root = tmp_path_factory.mktemp("trace")
    lm = tiny_lm("llama")
    lm.model.save_pretrained(root / "model")
    lm.tokenizer.save_pretrained(root / "model")
    rng = random.Random(0)
    paragraphs = [" ".join(rng.choice(WORDS) for _ in range(30)) + "." for _ in range(12)]
    (root / "corpus.txt").write_text("\n\n".join(paragraphs), encoding="utf-8")
    return root


def _args(root, out, analysis, lens="logit", *extra):
    return ["--model", str(root / "model"), "--text", str(root / "corpus.txt"), "--analysis", analysis,
            "--lens", lens, "--limit", "5", "--out", str(out), *extra]


def _csv(out):
    return next(out.glob("trace_*.csv"))


def test_interrupted_run_resumes_to_the_same_csv(tiny_setup, tmp_path, monkeypatch, capsys):
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    for analysis in ("frequency", "flips"):
        trace_layers.main(_args(tiny_setup, reference, analysis))

    trace_layers.main(_args(tiny_setup, resumed, "frequency"))
    def interrupted(context):
        raise KeyboardInterrupt
    monkeypatch.setitem(trace.ANALYSE, "flips", interrupted)
    with pytest.raises(SystemExit) as stop:
        run(trace_layers.main, _args(tiny_setup, resumed, "flips"))
    assert stop.value.code == 130
    assert set(read_results(_csv(resumed))["task"]) == {"frequency"}
    monkeypatch.undo()
    trace_layers.main(_args(tiny_setup, resumed, "flips"))
    capsys.readouterr()
    trace_layers.main(_args(tiny_setup, resumed, "frequency"))  # finished: skipped, file untouched
    assert "frequency: already in" in capsys.readouterr().out
    assert _csv(resumed).read_bytes() == _csv(reference).read_bytes()

    frame = read_results(_csv(reference))
    last = frame[frame["layer"] == frame["n_layers"]]
    assert (last[last["task"] == "flips"]["value"] == 0).all()  # the final layer never flips
    shares = frame[frame["task"] == "frequency"].groupby("layer")["value"].sum()
    assert shares.to_numpy() == pytest.approx(1.0)


def test_tuned_lens_is_trained_once_into_lens_dir(tiny_setup, tmp_path, capsys):
    lens_dir = tmp_path / "lens"
    trace_layers.main(_args(tiny_setup, tmp_path / "a", "flips", "tuned", "--lens-dir", str(lens_dir), "--lens-steps", "3"))
    assert "training a tuned lens" in capsys.readouterr().out
    assert (lens_dir / "config.json").exists() and (lens_dir / "translators.safetensors").exists()
    trace_layers.main(_args(tiny_setup, tmp_path / "b", "flips", "tuned", "--lens-dir", str(lens_dir), "--lens-steps", "3"))
    assert "training a tuned lens" not in capsys.readouterr().out
    assert _csv(tmp_path / "a").read_bytes() == _csv(tmp_path / "b").read_bytes()
    assert set(read_results(_csv(tmp_path / "a"))["method"]) == {"tuned-lens"}


def test_bad_input_is_one_line_and_writes_nothing(tiny_setup, tmp_path, capsys):
    args = _args(tiny_setup, tmp_path / "out", "frequency")
    args[args.index("--text") + 1] = str(tmp_path / "missing.txt")
    with pytest.raises(SystemExit) as stop:
        run(trace_layers.main, args)
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "missing.txt" in error and "\n" not in error
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def options_setup(tmp_path_factory):
    """A tiny llama whose option words are single tokens, the corpus, and an MMLU file with one bad row."""
    root = tmp_path_factory.mktemp("options")
    lm = tiny_lm("llama", words=OPTION_WORDS)
    lm.model.save_pretrained(root / "model")
    lm.tokenizer.save_pretrained(root / "model")
    rng = random.Random(0)
    paragraphs = [" ".join(rng.choice(WORDS) for _ in range(30)) + "." for _ in range(12)]
    (root / "corpus.txt").write_text("\n\n".join(paragraphs), encoding="utf-8")
    records = mmlu_records()
    records[4]["answer"] = 7  # not an index of its choices: skipped
    write_mmlu(root / "mmlu.jsonl", records)
    return root


def test_options_on_mmlu_data_resume_to_the_same_csv(options_setup, tmp_path, monkeypatch, capsys):
    root = options_setup
    args = ["--data", str(root / "mmlu.jsonl"), "--shots", "1"]
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    trace_layers.main(_args(root, reference, "options,flips", "logit", *args))
    monkeypatch.setitem(trace.ANALYSE, "flips", lambda context: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(SystemExit):
        run(trace_layers.main, _args(root, resumed, "options,flips", "logit", *args))
    assert set(read_results(_csv(resumed))["task"]) == {"options"}
    monkeypatch.undo()
    trace_layers.main(_args(root, resumed, "options,flips", "logit", *args))
    assert "options: already in" in capsys.readouterr().out
    assert _csv(resumed).read_bytes() == _csv(reference).read_bytes()

    frame = read_results(_csv(reference))
    options = frame[frame["task"] == "options"]
    assert set(options["subtask"]) == {"mmlu", "sentiment", "entailment"}
    mmlu = options[options["subtask"] == "mmlu"]
    assert set(mmlu["data"]) == {str(root / "mmlu.jsonl")} and set(mmlu["skipped_rows"]) == {1}
    assert set(mmlu[mmlu["layer"] >= 0]["n_items"]) == {5}  # --limit 5: five questions
    shortlist = mmlu[mmlu["metric"] == "options_in_topk"]
    assert sorted(shortlist["k"].unique()) == [4, 10, 100] and len(shortlist) == 3 * (frame["n_layers"].max() + 1)
    assert {"best_option_median_rank", "best_option_mean_rank", "top1_is_option", "correct_option_rank",
            "correct_top_option"} <= set(mmlu["metric"])


def test_bad_mmlu_data_is_one_line_and_writes_nothing(options_setup, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({"question": r["question"], "choices": r["choices"]}) + "\n"
                           for r in mmlu_records()), encoding="utf-8")  # no answer column
    with pytest.raises(SystemExit) as stop:
        run(trace_layers.main, _args(options_setup, tmp_path / "out", "frequency,options", "logit", "--data", str(bad)))
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "bad.jsonl" in error and "answer" in error and "\n" not in error
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_all_analyses_on_smollm2(tmp_path):
    trace_layers.main(["--analysis", "all", "--lens", "logit", "--limit", "1", "--out", str(tmp_path)])
    frame = read_results(tmp_path / "trace_smollm2-135m.csv")
    assert set(frame["task"]) == {"pos", "facts", "options", "frequency", "flips"}
    assert set(frame["method"]) == {"logit-lens"}
    assert {"DET", "NOUN", "RANDOM"} <= set(frame[frame["task"] == "pos"]["subtask"])
    assert {"mmlu", "sentiment", "entailment"} == set(frame[frame["task"] == "options"]["subtask"])
    rank1 = frame[(frame["metric"] == "rank1_share") & (frame["layer"] == 30)]
    assert len(rank1) and (rank1["value"] == 1.0).all()  # the target is the final top-1
    earliest = frame[(frame["metric"] == "earliest_layer")]
    assert earliest["value"].between(0, 30).all() and pd.notna(earliest["k"]).all()
