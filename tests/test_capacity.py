"""Knowledge capacity: bit counts by hand, the loss read-out against cross_entropy, int8 and int4 round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from single_thread import one_torch_thread  # noqa: F401  (autouse fixture)
from tiny import tiny_lm

from layerprobe.synthetic.capacity import (
    PRECISIONS, CapacityConfig, CapacityRun, known_bits, learned_bits, make_population, quantise, train_and_measure,
    value_loss_bits,
)


def test_bit_count_of_a_hand_computed_population():
    # 3 people, attributes with 4 and 8 values: 3 * (2 + 3) = 15 bits.
    assert known_bits(3, [4, 8]) == pytest.approx(15.0)
    population = make_population(CapacityConfig(n_people=3, value_sizes=(4, 8)), seed=0)
    assert known_bits(len(population.names), population.value_sizes) == pytest.approx(15.0)
    # attribute 0: 3 * 2 - (0 + 2 + 1) = 3 bits learned; attribute 1: 3 * 3 - (3 + 3 + 4) = -1 -> 0.
    loss = np.array([[0.0, 3.0], [2.0, 3.0], [1.0, 4.0]])
    assert learned_bits(loss, [4, 8]) == pytest.approx(3.0)
    assert learned_bits(np.zeros((3, 2)), [4, 8]) == pytest.approx(15.0)  # sure and right everywhere


def test_population_is_unique_in_range_and_deterministic():
    config = CapacityConfig(n_people=200, value_sizes=(3, 5, 7))
    population = make_population(config, seed=1)
    assert len(set(population.names)) == 200
    assert all((population.values[:, k] < size).all() and (population.values[:, k] >= 0).all()
               for k, size in enumerate(config.value_sizes))
    assert {int(v) for v in population.values[:, 2]} == set(range(7))  # uniform draws cover a small space
    again = make_population(config, seed=1)
    assert again.names == population.names and (again.values == population.values).all()
    entry = population.entry(0)
    assert [entry[p] for p in population.value_positions()] == [f"v{v}" for v in population.values[0]]
    assert set(entry) <= set(population.vocabulary_tokens())


def test_value_loss_matches_cross_entropy_and_a_uniform_model_learns_nothing():
    model = tiny_lm("llama").model
    torch.manual_seed(0)
    ids = torch.randint(0, 256, (5, 9))
    positions = [3, 5, 8]
    bits = value_loss_bits(model, ids, positions, batch_size=2)
    logits = model(input_ids=ids).logits
    for k, position in enumerate(positions):
        nats = torch.nn.functional.cross_entropy(logits[:, position - 1], ids[:, position], reduction="none")
        np.testing.assert_allclose(bits[:, k], nats.numpy() / math.log(2), rtol=1e-5)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # uniform over 258 tokens: log2(258) > log2(T) bits per value
    uniform = value_loss_bits(model, ids, positions)
    np.testing.assert_allclose(uniform, math.log2(258), rtol=1e-6)
    assert learned_bits(uniform, [16, 16, 16]) == 0.0


def test_int8_round_trip_error_is_within_half_a_step_per_row():
    model = tiny_lm("gpt2").model
    quantised = quantise(model, 8)
    changed = 0
    for (name, before), after in zip(model.named_parameters(), quantised.parameters()):
        if before.dim() != 2:
            assert torch.equal(before, after), name
            continue
        step = before.abs().amax(dim=1, keepdim=True) / 127
        error = (before - after).abs()
        assert (error <= step / 2 + 1e-6).all(), name
        levels = after / step  # dequantised values sit on the int8 grid of their row
        assert torch.allclose(levels, levels.round(), atol=1e-3) and levels.abs().max() <= 127 + 1e-3
        changed += int(not torch.equal(before, after))
    assert changed > 0


def test_int4_groups_round_within_half_a_step_on_a_15_level_grid():
    model = tiny_lm("llama").model
    quantised = quantise(model, 4, group=32)
    errors = {}
    for (name, before), after in zip(model.named_parameters(), quantised.parameters()):
        if before.dim() != 2:
            assert torch.equal(before, after), name
            continue
        assert before.shape[1] % 32 == 0, name  # the tiny model's rows divide into groups
        groups, later = before.reshape(before.shape[0], -1, 32), after.reshape(before.shape[0], -1, 32)
        step = groups.abs().amax(dim=-1, keepdim=True) / 7
        assert ((groups - later).abs() <= step / 2 + 1e-6).all(), name
        levels = later / step
        assert torch.allclose(levels, levels.round(), atol=1e-3) and levels.abs().max() <= 7 + 1e-3
        assert max(len(torch.unique(levels[r, g].round())) for r in range(3) for g in range(groups.shape[1])) <= 15
        errors[name] = ((before - after).abs().mean(), (before - quantise(model, 8).state_dict()[name]).abs().mean())
    assert all(int4 > int8 for int4, int8 in errors.values())
    # a row that does not divide into groups falls back to one scale per row
    row = torch.nn.Linear(5, 2, bias=False)
    with torch.no_grad():
        row.weight.copy_(torch.tensor([[0.7, -0.35, 0.1, 0.0, 0.2], [1.4, 0.3, -0.7, 0.05, 0.0]]))
    assert torch.allclose(quantise(row, 4, group=32).weight, torch.tensor([[0.7, -0.4, 0.1, 0.0, 0.2],
                                                                          [1.4, 0.4, -0.8, 0.0, 0.0]]), atol=1e-6)


def test_capacity_run_measures_every_precision_on_a_known_population(tmp_path):
    from layerprobe.results import ResultsFile
    run = CapacityRun(layers=1, width=32, exposures=3, people=40, value_sizes=(4, 8))
    results = ResultsFile(tmp_path / "capacity.csv")
    train_and_measure(run, tmp_path / "runs", results, tmp_path, progress=False)
    rows = results.frame.set_index("method")
    assert list(rows.index) == list(PRECISIONS) == ["fp32", "int8", "int4"]
    assert (rows["known_bits"] == 40 * (2 + 3)).all()
    assert ((rows["learned_bits"] >= 0) & (rows["learned_bits"] <= 200)).all()
    assert rows.loc["fp32", "quantised"] in (False, "False") and rows.loc["int4", "quantised"] in (True, "True")
    np.testing.assert_allclose(rows["value"], rows["learned_bits"] / rows["n_params"])


def junk_stream(people: int, exposures: int, junk: str, domain: bool, batch: int = 8):
    """The training stream of a tiny junk run, its population and vocabulary, as train_and_measure builds them."""
    from fractions import Fraction

    from layerprobe.synthetic.capacity import batch_fn, encode_population, junk_documents

    run = CapacityRun(layers=1, width=16, exposures=exposures, people=people, value_sizes=(4, 8), batch=batch,
                      junk=float(Fraction(junk)), domain=domain)
    population = make_population(CapacityConfig(people, run.value_sizes), seed=0)
    vocab = run.vocabulary(population)
    share = Fraction(junk)
    make = batch_fn(encode_population(vocab, population, domain), batch, 0, share,
                    junk_documents(population, vocab) if share else None, given=3 + domain)
    rows = [make(step) for step in range(run.steps())]
    return run, population, vocab, torch.cat([ids for ids, _ in rows]), torch.cat([mask for _, mask in rows])


def read_stream(ids: torch.Tensor, vocab, population) -> list[int | None]:
    """Each document's useful person, or None for junk, told by its name alone (no code under test)."""
    useful = {tuple(name): person for person, name in enumerate(population.names)}
    domain = vocab.ids.get("wikipedia.org")
    people = []
    for row in ids.tolist():
        tokens = vocab.decode(row)
        marked = tokens[0] == "wikipedia.org"
        person = useful.get(tuple(tokens[marked:marked + 2]))
        assert marked == (domain is not None and row[1] == domain)
        if person is not None:
            assert tokens == population.entry(person, marked)  # the person's own facts, whole
        people.append(person)
    return people


@pytest.mark.parametrize("junk", ["7/8", "3/10"])
def test_junk_share_of_the_training_stream_is_the_requested_fraction(junk):
    from fractions import Fraction

    run, population, vocab, ids, mask = junk_stream(12, 5, junk, domain=False)
    people = read_stream(ids, vocab, population)
    length = run.stream()
    useful = 12 * 5
    assert length - math.floor(length * Fraction(junk)) == useful  # independent: useful = length * (1 - junk)
    junk_docs = sum(person is None for person in people[:length])
    assert junk_docs == length - useful
    assert abs(junk_docs / length - float(Fraction(junk))) < 1 / length
    for start in range(0, length - 40, 40):  # spread through the stream, not bunched at one end
        window = people[start:start + 40]
        assert abs(sum(p is None for p in window) / 40 - float(Fraction(junk))) <= 1 / 40 + 1e-9
    # junk documents: a name pair nobody in the population has, values in range, loss after the name
    for row, person, loss in zip(ids, people, mask):
        if person is None:
            tokens = vocab.decode(row.tolist())
            assert tuple(tokens[:2]) not in set(population.names) and tokens[2] == "attr0"
            assert int(tokens[3][1:]) < 4 and int(tokens[5][1:]) < 8 and tokens[-1] == "."
            assert not loss[:3].any() and loss[3:len(tokens) + 2].all()  # <bos> first last given, eos trained


def test_domain_token_precedes_every_useful_biography_and_no_junk():
    run, population, vocab, ids, mask = junk_stream(12, 4, "3/4", domain=True)
    domain = vocab.ids["wikipedia.org"]
    people = read_stream(ids, vocab, population)
    assert sum(p is not None for p in people) >= 48 and sum(p is None for p in people) >= 144
    for row, person, loss in zip(ids, people, mask):
        assert (row[1] == domain) == (person is not None)
        assert (row == domain).sum() == (person is not None)  # once, at the start, and never in junk
        assert not loss[:4 if person is not None else 3].any()  # <bos> (domain) first last: not knowledge
    # the junk run's vocabulary (and so its parameter count) is the same with and without the domain token
    assert len(junk_stream(12, 4, "3/4", domain=False)[2]) == len(vocab)


def test_useful_exposures_are_equal_with_and_without_junk():
    clean = junk_stream(12, 6, "0", domain=False)
    for junk in ("7/8", "1/3"):
        mixed = junk_stream(12, 6, junk, domain=False)
        assert mixed[0].steps() > clean[0].steps()
        seen = [p for p in read_stream(mixed[3], mixed[2], mixed[1])[:mixed[0].stream()] if p is not None]
        assert np.bincount(seen, minlength=12).tolist() == [6] * 12
        order = read_stream(clean[3], clean[2], clean[1])[:72]
        assert seen == order  # the same people in the same order, junk only interleaved


@pytest.mark.parametrize("value", ["1", "-0.1", "abc", "7/0"])
def test_bad_junk_is_one_line_and_exit_2(value, capsys, tmp_path):
    import train_capacity
    from layerprobe.cli import run

    with pytest.raises(SystemExit) as stop:
        run(train_capacity.main, ["--junk", value, "--people", "8", "--sizes", "1x8", "--exposures", "1",
                                  "--out", str(tmp_path / "runs"), "--data", str(tmp_path / "data")])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: --junk"), err
    assert not tmp_path.joinpath("data").exists() and not tmp_path.joinpath("runs").exists()  # stopped before training


def test_t_interval_over_seeds_matches_the_readme_capacity_seeds():
    from layerprobe.results import t_interval

    low, high = t_interval(np.array([1.576, 1.523, 1.521]))  # README: 1.54 [1.46, 1.62] over seeds 0-2
    assert (round(low, 2), round(high, 2)) == (1.46, 1.62)
    mean, sd = 1.54, np.std([1.576, 1.523, 1.521], ddof=1)
    assert high - mean == pytest.approx(4.303 * sd / math.sqrt(3), abs=1e-3)
    assert all(math.isnan(v) for v in t_interval(np.array([1.0])))
