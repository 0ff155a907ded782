"""Knowledge capacity: bit counts by hand, the loss read-out against cross_entropy, int8 round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from single_thread import one_torch_thread  # noqa: F401  (autouse fixture)
from tiny import tiny_lm

from layerprobe.synthetic.capacity import (
    CapacityConfig, known_bits, learned_bits, make_population, quantise_int8, value_loss_bits,
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
    quantised = quantise_int8(model)
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
