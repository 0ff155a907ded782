"""Sampling, exact-match answers and probes of models trained on synthetic data."""

import numpy as np
import pytest
import torch

from layerprobe.engine import hidden_states_at
from layerprobe.probes import cross_validate
from layerprobe.results import ResultsFile, read_results
from layerprobe.synthetic.evaluate import answers_correct, cfg_generation, sample
from layerprobe.synthetic import report
from layerprobe.synthetic.report import ProbeOptions, cfg_report
from layerprobe.synthetic.runs import RunConfig, new_model, random_twin
from layerprobe.synthetic.train import build_model, train, wrap
from layerprobe.synthetic.vocab import Vocab

COPY_VOCAB = Vocab("abcdefgh|")
SPAN = 8


def copy_batch(step: int, batch: int = 24) -> torch.Tensor:
    """<bos> x1..x8 | x1..x8: after '|' the model must recall the tokens by position."""
    generator = torch.Generator().manual_seed(step)
    body = torch.randint(3, 11, (batch, SPAN), generator=generator)
    bar = torch.full((batch, 1), COPY_VOCAB.ids["|"])
    return torch.cat([torch.full((batch, 1), Vocab.bos_id), body, bar, body], dim=1)


@pytest.fixture(scope="module")
def copy_models():
    trained = build_model("llama", len(COPY_VOCAB), 2, 32, 4, 32, seed=0)
    train(trained, copy_batch, steps=120, lr=1e-2, progress=False)
    return wrap(trained, COPY_VOCAB, "copy"), wrap(build_model("llama", len(COPY_VOCAB), 2, 32, 4, 32, seed=0), COPY_VOCAB)


def greedy_by_hand(lm, prompt: list[int], steps: int) -> list[int]:
    """Token by token, full forward each time, no cache: the reference for both decoders."""
    ids = list(prompt)
    for _ in range(steps):
        ids.append(int(lm.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt):]


def test_probe_on_the_trained_model_beats_the_random_model(copy_models):
    trained, random = copy_models
    batch = copy_batch(10_000, batch=160)
    sequences = batch.tolist()
    positions = [[SPAN + 1]] * len(sequences)  # the '|': the next token is x1
    labels = batch[:, 1].numpy()
    scores = {}
    for name, lm in [("trained", trained), ("random", random)]:
        states = torch.cat(hidden_states_at(lm, sequences, positions, progress=False), dim=1)
        scores[name] = cross_validate(states, labels, folds=4, seed=0, control=False).mean()
    assert scores["trained"][-1] > 0.9  # the last layer holds x1, which the model is about to copy
    assert scores["trained"][-1] > scores["random"][-1] + 0.2  # the random model keeps some x1 (~0.7)
    assert scores["trained"][0] < 0.3 and scores["random"][0] < 0.3  # the '|' embedding alone says nothing


def test_exact_match_and_sampling_agree_with_greedy_decoding(copy_models):
    trained, _ = copy_models
    prompts = copy_batch(20_000, batch=4)[:, : SPAN + 2].tolist()
    by_hand = [greedy_by_hand(trained, p, SPAN) for p in prompts]
    assert np.mean([h == p[1:SPAN + 1] for h, p in zip(by_hand, prompts)]) > 0.8  # it learned to copy
    wrong = [[(t - 3 + 1) % 8 + 3 for t in h] for h in by_hand]
    # answers_correct also demands <eos> after the answer: compare against the hand decoder's 5th token
    eos_next = [greedy_by_hand(trained, p + h, 1)[0] == Vocab.eos_id for p, h in zip(prompts, by_hand)]
    assert answers_correct(trained, prompts, by_hand).tolist() == eos_next
    assert not answers_correct(trained, prompts, wrong).any()
    cold = sample(trained, prompts, max_new=SPAN, seed=0, temperature=1e-4)  # ~greedy, through the KV cache
    assert [tokens for tokens, _ in cold] == [h[: len(tokens)] for h, (tokens, _) in zip(by_hand, cold)]
    assert all(len(tokens) == SPAN or ended for tokens, ended in cold)
    warm = [sample(trained, prompts, max_new=SPAN, seed=s, temperature=3.0) for s in (1, 1, 2)]
    assert warm[0] == warm[1] != warm[2]  # deterministic by seed


def test_cfg_report_writes_rows_that_match_the_checker_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "_cfg_label_names", lambda depth: ["ancestor/level2", "span_end/level3"])  # time
    config = RunConfig(world="cfg", layers=2, width=32, heads=4)
    grammar, vocab = config.grammar_(), config.vocab()
    lm = wrap(new_model(config, vocab), vocab, "tiny-cfg")
    options = ProbeOptions(samples=4, cut=5, strings=24, positions=4, folds=2)
    results = ResultsFile(tmp_path / "cfg.csv")
    cfg_report(config, lm, random_twin(config, lm), results, options)
    frame = read_results(tmp_path / "cfg.csv")
    generation = cfg_generation(lm, grammar, vocab, 4, 5, seed=0)
    row = frame[(frame.subtask == "cut5") & (frame.metric == "accuracy")]
    assert row.value.item() == generation.accepted.mean() and row.layer.item() == -1
    probes = frame[(frame.task == "cfg") & (frame.metric == "accuracy")]
    assert set(probes.method) == {"probe-trained", "probe-random"}
    assert set(probes.subtask) == {"ancestor/level2", "span_end/level3"}
    assert len(probes) == 2 * 2 * 3  # methods x labels x layers 0..2
    before = frame.copy()
    cfg_report(config, lm, random_twin(config, lm), ResultsFile(tmp_path / "cfg.csv"), options)
    assert read_results(tmp_path / "cfg.csv").equals(before)  # resumed: nothing recomputed or duplicated
