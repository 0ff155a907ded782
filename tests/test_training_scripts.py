"""train_igsm.py and train_capacity.py end to end on tiny flags: their CSV rows against independent rechecks.

The rechecks share only the data generators with the scripts (the problems, the population): the
model is reloaded from the run folder and decoded or scored one sequence at a time by a naive loop.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from single_thread import one_torch_thread  # noqa: F401  (autouse fixture)
from transformers import AutoModelForCausalLM

import train_capacity
import train_igsm
from layerprobe.results import read_results
from layerprobe.synthetic import capacity, igsm, igsm_lm
from layerprobe.synthetic.vocab import Vocab

IGSM_NAME = "igsm-cpu-llama-canonA-l2w32-retry0-s20-c0.25"  # what --quick trains (Canon A, 1-operation curriculum 0.25)


def load(run_dir: Path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(run_dir / "model", dtype=torch.float32).eval()


@torch.no_grad()
def greedy_by_hand(model: torch.nn.Module, vocab: Vocab, problem: igsm.Problem, max_new: int = 160) -> list[str]:
    """One full forward per new token, no cache, no padding: the reference for the batched left-padded solver."""
    ids = vocab.encode(igsm.prompt_tokens(problem), bos=True)
    new: list[int] = []
    for _ in range(max_new):
        token = int(model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
        if token == vocab.eos_id:
            break
        new.append(token)
    return vocab.decode(new, skip_special=False)


def accuracy(frame, split: str, subtask: str, metric: str = "accuracy") -> tuple[float, int]:
    row = frame[(frame.language == split) & (frame.subtask == f"retry=0/l2w32/{subtask}") & (frame.metric == metric)]
    assert len(row) == 1, (split, subtask, metric)
    return float(row.value.item()), int(row.n_items.item())


@pytest.fixture(scope="module")
def igsm_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("igsm")
    train_igsm.main(["--quick", "--threads", "1", "--out", str(root / "runs"), "--data", str(root / "data")])
    return root


def test_train_igsm_grades_what_a_naive_greedy_decoder_writes(igsm_run):
    """train_igsm.py: accuracy and step share per split equal a token-by-token greedy decode graded by check_solution."""
    frame = read_results(igsm_run / "data" / f"igsm-accuracy_{IGSM_NAME}.csv")
    model, vocab = load(igsm_run / "runs" / IGSM_NAME), igsm_lm.make_vocab()
    config = igsm.PRESETS["cpu"]
    for split in ("train", "test"):
        problems = igsm_lm.eval_problems(config, 6, split, seed=0)  # --quick grades 6 per split
        assert {p.split() for p in problems} == {split}
        checks = [igsm.check_solution(p, greedy_by_hand(model, vocab, p)) for p in problems]
        value, n_items = accuracy(frame, split, "all")
        assert (value, n_items) == (pytest.approx(np.mean([c.correct for c in checks])), 6)
        steps = [sum(i in p.nece for i in c.defined) / len(p.nece) for p, c in zip(problems, checks)]
        assert accuracy(frame, split, "all", "step_share")[0] == pytest.approx(np.mean(steps))
    curve = pd.read_csv(igsm_run / "data" / f"train_{IGSM_NAME}.csv")
    assert curve.step.max() == 20
    # an untrained model is near uniform over the vocabulary; 20 steps at lr 1e-3 must lower the loss (measured: by 0.36)
    assert curve.loss.iloc[0] == pytest.approx(math.log(len(vocab)), abs=0.3)
    assert curve.loss.iloc[-1] < curve.loss.iloc[0] - 0.2


def test_train_igsm_accuracy_rows_count_an_oracle_by_split_and_operations(igsm_run, monkeypatch):
    """With a solver that writes the reference solution for some problems and nothing for the others, every
    accuracy row of the CSV must equal the count of those problems (the trained run is reused, not retrained)."""
    solved: list[tuple[str, int, bool]] = []

    def oracle(model, vocab, problems, progress=True, prefixes=None):
        if prefixes is not None:  # detour_grade's continuations: not counted here (test_igsm_training has them)
            return [[] for _ in problems]
        split = problems[0].split()
        right = {"train": {0, 1, 2, 3}, "test": {0}}[split]
        solved.extend((split, p.operations, i in right) for i, p in enumerate(problems))
        return [igsm.solution_tokens(p).tokens if i in right else [] for i, p in enumerate(problems)]

    monkeypatch.setattr(igsm_lm, "solve", oracle)
    train_igsm.main(["--quick", "--threads", "1", "--out", str(igsm_run / "runs"), "--data", str(igsm_run / "oracle")])
    frame = read_results(igsm_run / "oracle" / f"igsm-accuracy_{IGSM_NAME}.csv")
    assert len(solved) == 12
    for split in ("train", "test"):
        mine = [(ops, ok) for s, ops, ok in solved if s == split]
        assert accuracy(frame, split, "all") == (pytest.approx(np.mean([ok for _, ok in mine])), len(mine))
        for ops in sorted({ops for ops, _ in mine}):
            hits = [ok for o, ok in mine if o == ops]
            assert accuracy(frame, split, f"ops={ops}") == (pytest.approx(np.mean(hits)), len(hits))
    assert accuracy(frame, "train", "all")[0] == pytest.approx(4 / 6)
    assert accuracy(frame, "test", "all")[0] == pytest.approx(1 / 6)


def quantised_by_hand(model: torch.nn.Module, top: int = 127, group: int = 0) -> torch.nn.Module:
    """Symmetric rounding to -top..top of every matrix, one scale per row (or per `group` weights of a
    row when the row divides into them), written out element-wise in numpy."""
    import copy

    quantised = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in quantised.parameters():
            if parameter.dim() == 2:
                weight = parameter.numpy().astype(np.float64)
                size = group if group and weight.shape[1] % group == 0 else weight.shape[1]
                out = np.empty_like(weight)
                for r, row in enumerate(weight):
                    for start in range(0, len(row), size):
                        part = row[start:start + size]
                        scale = max(np.abs(part).max() / top, 1e-12)
                        out[r, start:start + size] = np.clip(np.round(part / scale), -top, top) * scale
                parameter.copy_(torch.from_numpy(out).float())
    return quantised


@torch.no_grad()
def learned_bits_by_hand(model: torch.nn.Module, vocab: Vocab, population: capacity.Population, domain: str = "") -> float:
    """Each person alone: -log2 p(value | <bos> [domain] name attr0 v .. attr_k) summed per attribute, floored at 0."""
    losses = np.zeros((len(population.names), len(population.value_sizes)))
    for person in range(len(population.names)):
        first, last = population.names[person]
        tokens = [domain] * bool(domain) + [first, last]
        for k, value in enumerate(population.values[person]):
            tokens += [f"attr{k}", f"v{value}"]
        ids = vocab.encode(tokens, bos=True)
        logprobs = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), -1)
        for k in range(len(population.value_sizes)):
            at = 1 + bool(domain) + 2 + 2 * k + 1  # <bos> [domain] first last attr0 v0 ...: the value of attribute k
            losses[person, k] = -logprobs[at - 1, ids[at]].item() / math.log(2)
    n = len(population.names)
    return sum(max(0.0, n * math.log2(size) - losses[:, k].sum()) for k, size in enumerate(population.value_sizes))


def test_train_capacity_bits_equal_a_naive_recount(tmp_path):
    """train_capacity.py: known bits by hand (16 people x (2 + 3) bits), learned bits from a per-person forward."""
    train_capacity.main(["--people", "16", "--values", "4", "8", "--sizes", "1x16", "--exposures", "100",
                         "--batch", "16", "--lr", "1e-2", "--out", str(tmp_path / "runs"), "--data", str(tmp_path / "data")])
    frame = read_results(tmp_path / "data" / "capacity_n16.csv").set_index("method")
    name = "capacity-n16-llama-l1w16-x100"
    model = load(tmp_path / "runs" / name)
    population = capacity.make_population(capacity.CapacityConfig(16, (4, 8)), seed=0)
    vocab = Vocab(population.vocabulary_tokens())
    params = sum(p.numel() for p in model.parameters())
    assert set(frame.index) == {"fp32", "int8", "int4"} and (frame.model == name).all()
    assert (frame.known_bits == 80).all() and (frame.n_params == params).all() and (frame.n_items == 16).all()
    for method, measured in (("fp32", model), ("int8", quantised_by_hand(model)),
                             ("int4", quantised_by_hand(model, top=7, group=32))):
        bits = learned_bits_by_hand(measured, vocab, population)
        assert frame.loc[method, "learned_bits"] == pytest.approx(bits, abs=1e-3)
        assert frame.loc[method, "value"] == pytest.approx(bits / params, rel=1e-6)
    assert frame.loc["fp32", "learned_bits"] > 60  # 100 exposures of 16 people: most of the 80 bits are stored
    curve = pd.read_csv(tmp_path / "data" / f"train_{name}.csv")
    assert curve.step.max() == 100  # ceil(16 people x 100 exposures / 16 per batch)


def test_train_capacity_with_junk_and_domain_measures_the_useful_people(tmp_path):
    """--junk 3/4 --domain: 4x the steps of the clean run, rows labelled, bits recounted after "wikipedia.org"."""
    train_capacity.main(["--people", "16", "--values", "4", "8", "--sizes", "1x16", "--exposures", "25", "--junk", "3/4",
                         "--domain", "--batch", "16", "--lr", "1e-2", "--out", str(tmp_path / "runs"),
                         "--data", str(tmp_path / "data")])
    name = "capacity-n16-llama-l1w16-x25-junk0.75-domain"
    frame = read_results(tmp_path / "data" / "capacity_n16.csv").set_index("method")
    assert (frame.model == name).all() and (frame.condition == "junk 3/4 + domain").all() and (frame.junk == 0.75).all()
    model = load(tmp_path / "runs" / name)
    population = capacity.make_population(capacity.CapacityConfig(16, (4, 8)), seed=0)
    vocab = Vocab(population.vocabulary_tokens() + ["wikipedia.org"])
    assert model.get_input_embeddings().num_embeddings == len(vocab)
    bits = learned_bits_by_hand(model, vocab, population, domain="wikipedia.org")
    assert frame.loc["fp32", "learned_bits"] == pytest.approx(bits, abs=1e-3)
    curve = pd.read_csv(tmp_path / "data" / f"train_{name}.csv")
    assert curve.step.max() == 100  # 16 people x 25 exposures / (1 - 3/4) / 16 per batch
