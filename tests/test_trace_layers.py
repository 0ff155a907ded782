"""trace_layers.py end to end: resume after an interruption, the tuned-lens cache, one-line errors, options on
MMLU --data, SmolLM2."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from test_trace_options import mmlu_records, write_mmlu
from tiny import OPTION_WORDS, tiny_lm

import trace_layers
from layerprobe import trace
from layerprobe.cli import run
from layerprobe.corpus import corpus_paragraphs, load_corpus, split_corpus
from layerprobe.models import load_model
from layerprobe.results import read_results
from layerprobe.tasks.factual import FACTS
from layerprobe.trace.facts import fact_cuts
from layerprobe.trace.frequency import corpus_positions

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



@torch.no_grad()
def lens_logits_by_hand(model, ids: list[int], positions: list[int] | None = None) -> torch.Tensor:
    """[L+1, T, V] at `positions` (default all): final norm + unembedding of every block's output, and the
    model's own logits at the last layer (in transformers 5 the last hidden state already has the final norm)."""
    where = list(range(len(ids))) if positions is None else positions
    out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    inner = [model.lm_head(model.model.norm(state[0, where])) for state in out.hidden_states[:-1]]
    return torch.stack(inner + [out.logits[0, where]]).float()


def test_flips_and_frequency_rows_equal_a_naive_logit_lens(tiny_setup, tmp_path):
    """The flips and frequency rows at every layer, recomputed from the model's own forward by a naive loop.

    The final norm gets random weights (a fresh RMSNorm is all ones, which cannot change an argmax), so
    a lens that skipped it or applied it wrongly would read other top-1 tokens."""
    lm = load_model(str(tiny_setup / "model"))
    with torch.no_grad():
        lm.model.model.norm.weight.copy_(torch.randn(lm.model.config.hidden_size, generator=torch.Generator().manual_seed(1)))
    lm.model.save_pretrained(tmp_path / "model")
    lm.tokenizer.save_pretrained(tmp_path / "model")
    shutil.copy(tiny_setup / "corpus.txt", tmp_path / "corpus.txt")
    out = tmp_path / "out"
    for analysis in ("frequency", "flips"):
        trace_layers.main(_args(tmp_path, out, analysis))
    frame = read_results(_csv(out))
    train, held_out = (corpus_paragraphs(part) for part in split_corpus(load_corpus(text=tmp_path / "corpus.txt")))
    sequences, positions = corpus_positions(lm, held_out, 5, seed=0)  # --limit 5 positions, seed 0
    tops = []  # per position: the top-1 token at every layer
    for ids, where in zip(sequences, positions):
        logits = lens_logits_by_hand(lm.model, ids)
        tops += [logits[:, p].argmax(-1).numpy() for p in where]
    tops = np.array(tops)  # [N, L+1]
    assert tops.shape == (5, lm.n_layers + 1)
    flips = frame[(frame.task == "flips") & (frame.subtask == "all")].sort_values("layer")
    assert flips.value.to_numpy() == pytest.approx((tops != tops[:, -1:]).mean(axis=0))
    assert flips.value.iloc[:-1].max() > 0  # a random model's inner layers disagree with its output somewhere
    counts = Counter(i for paragraph in train for i in lm.tokenizer(paragraph, add_special_tokens=False)["input_ids"])
    top10 = sorted(counts, key=lambda token: (-counts[token], token))[:10]
    shares = frame[(frame.task == "frequency") & (frame.subtask == "top10")].sort_values("layer")
    assert shares.value.to_numpy() == pytest.approx(np.isin(tops, top10).mean(axis=0))


def test_tuned_lens_is_trained_once_into_lens_dir(tiny_setup, tmp_path, capsys):
    lens_dir = tmp_path / "lens"
    trace_layers.main(_args(tiny_setup, tmp_path / "a", "flips", "tuned", "--lens-dir", str(lens_dir), "--lens-steps", "3"))
    assert "training a tuned lens" in capsys.readouterr().out
    assert (lens_dir / "config.json").exists() and (lens_dir / "translators.safetensors").exists()
    trace_layers.main(_args(tiny_setup, tmp_path / "b", "flips", "tuned", "--lens-dir", str(lens_dir), "--lens-steps", "3"))
    assert "training a tuned lens" not in capsys.readouterr().out
    assert _csv(tmp_path / "a").read_bytes() == _csv(tmp_path / "b").read_bytes()
    frame = read_results(_csv(tmp_path / "a"))
    assert set(frame[frame["task"] != "lens"]["method"]) == {"tuned-lens"}
    # Both lenses' held-out KL per layer, as measured when the lens was trained; the tuned lens is below.
    config = json.loads((lens_dir / "config.json").read_text())
    kl = frame[(frame["task"] == "lens") & (frame["metric"] == "kl")]
    for method, measured in (("logit-lens", config["held_out_kl_logit"]), ("tuned-lens", config["held_out_kl_tuned"])):
        curve = kl[kl["method"] == method].sort_values("layer")
        assert curve["layer"].tolist() == list(range(len(measured)))
        assert curve["value"].to_numpy() == pytest.approx(measured)
        assert (curve["n_items"] == config["held_out_positions"]).all()
    assert config["held_out_kl_tuned"][-1] == pytest.approx(0.0, abs=1e-5)
    assert all(t < lg for t, lg in zip(config["held_out_kl_tuned"][:-1], config["held_out_kl_logit"][:-1]))


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
    # facts (--limit 1: one fact per answer length), recomputed from the model's own forward: kept when every
    # answer token is the final top-1; rank = 1 + the tokens with a strictly higher logit, counted by a plain loop
    lm = load_model("smollm2-135m")
    items = fact_cuts(lm, FACTS, 1, seed=0)
    ranks: dict[str, list[np.ndarray]] = {}
    for ids, where, expected, labels in zip(items.sequences, items.positions, items.expected, items.labels):
        logits = lens_logits_by_hand(lm.model, ids, where)  # [31, n, V]
        if logits[-1].argmax(-1).tolist() != expected:
            continue
        for j, (token, label) in enumerate(zip(expected, labels)):
            ranks.setdefault(label, []).append(np.array([1 + sum(int(v > row[token]) for v in row.tolist())
                                                         for row in logits[:, j]]))
    facts = frame[frame["task"] == "facts"]
    assert ranks and set(facts["subtask"]) == set(ranks)
    for label, rows in ranks.items():
        by_hand = np.array(rows)  # [kept, 31]
        got = facts[facts["subtask"] == label].pivot_table(index="layer", columns="metric", values="value")
        assert got.loc[0:30, "rank1_share"].to_numpy() == pytest.approx((by_hand == 1).mean(axis=0))
        assert got.loc[0:30, "median_rank"].to_numpy() == pytest.approx(np.median(by_hand, axis=0), rel=0.02, abs=1)
    assert max(np.median(np.array(rows)[:, 10]) for rows in ranks.values()) > 1  # layer 10 is not yet the answer
    earliest = frame[(frame["metric"] == "earliest_layer")]
    assert earliest["value"].between(0, 30).all() and pd.notna(earliest["k"]).all()
