"""Part 1 analyses: attention by distance and to span boundaries, birthday-paradox diversity, corrupted data."""

import numpy as np
import pytest
import torch

from layerprobe.results import ResultsFile, read_results
from layerprobe.synthetic.cfg import corrupt, get_grammar
from layerprobe.synthetic.data import cfg_batches, cfg_vocab
from layerprobe.synthetic.evaluate import attention_by_distance, attention_maps, boundary_attention, collision_support
from layerprobe.synthetic.report import ProbeOptions, cfg_report
from layerprobe.synthetic.runs import RunConfig, new_model, random_twin
from layerprobe.synthetic.train import wrap
from layerprobe.synthetic.vocab import Vocab


def causal_random_maps(lengths, layers=2, heads=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    maps = []
    for length in lengths:
        scores = torch.rand(layers, heads, length, length, generator=generator)
        scores = scores.masked_fill(torch.ones(length, length, dtype=torch.bool).triu(1), 0)
        maps.append(scores / scores.sum(-1, keepdim=True))
    return maps


def test_attention_by_distance_matches_a_loop_over_a_hand_built_matrix():
    uniform = torch.tril(torch.ones(4, 4)) / torch.arange(1, 5)[:, None]  # query q spreads 1/(q+1) over keys 0..q
    profile = attention_by_distance([uniform[None, None]], max_distance=3)[0, 0]
    # d=0: mean(1, 1/2, 1/3, 1/4); d=3: only query 3 has a key 3 back, with 1/4
    assert profile == pytest.approx([np.mean([1, 1 / 2, 1 / 3, 1 / 4]), np.mean([1 / 2, 1 / 3, 1 / 4]),
                                     np.mean([1 / 3, 1 / 4]), 1 / 4])
    maps = causal_random_maps([5, 9, 7])
    profile = attention_by_distance(maps, max_distance=10)
    for layer in range(2):
        for head in range(3):
            for d in range(11):
                values = [float(m[layer, head, q, q - d]) for m in maps for q in range(d, m.shape[-1])]
                expected = np.mean(values) if values else np.nan
                assert profile[layer, head, d] == pytest.approx(expected, nan_ok=True)


def test_boundary_attention_against_a_hand_built_matrix():
    # terminals t0..t4 at tokens 1..5; level-1 spans [t0 t1] [t2 t3 t4]: ends at t1 and t4
    ends = np.array([[0, 0, 0, 0, 1], [0, 1, 0, 0, 1]], dtype=bool)
    weights = torch.zeros(1, 1, 6, 6)
    for q in range(6):
        weights[0, 0, q, : q + 1] = 1 / (q + 1)
    weights[0, 0, 4, :] = torch.tensor([0.1, 0.1, 0.6, 0.1, 0.1, 0.0])  # t3 looks hard at t1 (token 2)
    profile = attention_by_distance([weights], 5)
    excess = boundary_attention([weights], [ends], [1], profile)
    # queries with an earlier level-1 end: t2 (token 3) -> token 2, t3 (4) -> 2, t4 (5) -> 2
    expected = np.mean([weights[0, 0, q, 2].item() - profile[0, 0, q - 2] for q in (3, 4, 5)])
    assert excess[0, 0, 0] == pytest.approx(expected)
    assert excess[0, 0, 0] > 0
    # level 0 (the root) ends only at the last terminal: no query has an earlier end
    assert boundary_attention([weights], [ends], [0], profile)[0, 0, 0] == 0


def test_attention_maps_are_the_models_causal_probabilities():
    config = RunConfig(world="cfg", grammar="small", layers=2, width=32, heads=4)
    vocab = config.vocab()
    lm = wrap(new_model(config, vocab), vocab, "tiny")
    [maps] = attention_maps(lm, [[Vocab.bos_id, 3, 4, 5, 3]])
    assert maps.shape == (2, 4, 5, 5)
    assert torch.allclose(maps.sum(-1), torch.ones(2, 4, 5), atol=1e-5)
    assert maps.triu(1).abs().max() == 0
    assert lm.model.config._attn_implementation == "sdpa"  # restored


def test_collision_support_recovers_known_distributions():
    assert collision_support(["a", "a", "b", "c"]) == (6.0, 1)  # 6 pairs, one collides
    assert collision_support(["a", "b", "c"]) == (3.0, 0)  # no collision: the bound
    rng = np.random.default_rng(0)
    uniform = [int(x) for x in rng.integers(0, 300, size=3000)]
    assert collision_support(uniform)[0] == pytest.approx(300, rel=0.1)
    p = np.array([0.5, 0.2, 0.1] + [0.2 / 40] * 40)
    skewed = [int(x) for x in rng.choice(len(p), size=3000, p=p)]
    assert collision_support(skewed)[0] == pytest.approx(1 / (p ** 2).sum(), rel=0.1)  # 3.3, not 43 symbols


def test_corruption_rate_and_corrupted_training_stream():
    grammar = get_grammar("small")
    rng = np.random.default_rng(0)
    string = grammar.sample(rng).terminals
    assert corrupt(string, grammar.terminals, rng, rate=0.0) == string
    flips = [a != b for _ in range(200) for a, b in zip(string, corrupt(string, grammar.terminals, rng))]
    assert 0.15 * 2 / 3 - 0.03 < np.mean(flips) < 0.15 * 2 / 3 + 0.03  # a redraw keeps the terminal 1 time in 3
    vocab = cfg_vocab(grammar)
    clean = cfg_batches(grammar, vocab, 16, seed=0)(0)
    noisy = cfg_batches(grammar, vocab, 16, seed=0, corrupted=1.0)(0)

    def accepted(batch):
        return [grammar.accepts([int(t) for t in vocab.decode(row.tolist())]) for row in batch]
    assert all(accepted(clean))
    assert sum(accepted(noisy)) < 8


def test_cfg_report_adds_attention_diversity_and_corrupted_prompt_rows(tmp_path, monkeypatch):
    from layerprobe.synthetic import report
    monkeypatch.setattr(report, "_cfg_label_names", lambda depth: [])
    monkeypatch.setattr(report, "MAX_DISTANCE", 6)
    config = RunConfig(world="cfg", grammar="small", layers=2, width=32, heads=2, corrupted=0.2)
    assert config.name() == "cfg-small-llama-corrupt0.2"
    vocab = config.vocab()
    lm = wrap(new_model(config, vocab), vocab, "tiny-cfg")
    results = ResultsFile(tmp_path / "cfg.csv")
    cfg_report(config, lm, random_twin(config, lm), results, ProbeOptions(samples=6, cut=5, strings=3))
    frame = read_results(tmp_path / "cfg.csv")
    assert {"root", "cut5", "cut5-corrupted"} <= set(frame.subtask)
    support = frame[(frame.metric == "support_collision") & (frame.method == "grammar")]
    assert support.value.item() == 15.0  # 6 distinct grammar strings: no collision, 15 pairs
    attention = frame[frame.task == "cfg-attention"]
    assert set(attention.method) == {"attention-trained", "attention-random"}
    distance = attention[attention.metric == "attention"]
    assert len(distance) == 2 * 2 * 2 * 7  # methods x blocks x heads x distances 0..6 (strings are longer)
    assert set(distance.layer) == {1, 2}
    boundary = attention[attention.metric == "excess_attention"]
    assert set(boundary.subtask) == {f"boundary/head{h}/level{k}" for h in range(2) for k in (1, 2, 3)}
