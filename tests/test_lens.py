"""Logit lens and tuned lens: exactness at the last layer, KL against a hand computation, training, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import tiny_lm

from layerprobe.engine import hidden_states_at
from layerprobe.errors import DataError
from layerprobe.lens import LogitLens, TunedLens, held_out_kl, kl_to_final, train_tuned_lens

TEXT = ("The committee met on Tuesday to discuss the budget. Members of the public asked about the new "
        "library, the roads and the schools. The mayor said the city would publish a report in the spring.")


def _all_states(lm, ids: list[int]) -> torch.Tensor:
    return hidden_states_at(lm, [ids], [list(range(len(ids)))], progress=False)[0]


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "gpt_neox", "gemma3_text"])
def test_logit_lens_at_last_layer_is_the_models_logits(model_type):
    lm = tiny_lm(model_type)
    ids = lm.tokenizer(TEXT[:60])["input_ids"]
    states = _all_states(lm, ids)
    lens = LogitLens(lm.adapter)
    with torch.no_grad():
        expected = lm.model(torch.tensor([ids])).logits[0].float()
    torch.testing.assert_close(lens(states[-1], lm.n_layers), expected, atol=1e-4, rtol=1e-4)
    # An untrained tuned lens is the identity: equal to the logit lens at every layer.
    tuned = TunedLens.for_model(lm)
    with torch.no_grad():
        torch.testing.assert_close(tuned.all_layers(states), lens.all_layers(states))


@pytest.mark.slow
def test_logit_lens_at_last_layer_is_smollm2s_logits():
    from layerprobe.models import load_model

    lm = load_model("smollm2-135m")
    ids = lm.tokenizer("The capital of France is")["input_ids"]
    states = _all_states(lm, ids)
    with torch.no_grad():
        expected = lm.model(torch.tensor([ids])).logits[0].float()
    logits = LogitLens(lm.adapter)(states[-1], lm.n_layers)
    torch.testing.assert_close(logits, expected, atol=1e-3, rtol=1e-4)
    assert lm.tokenizer.decode(int(logits[-1].argmax())) == " Paris"


def test_kl_matches_a_hand_computation():
    lm = tiny_lm("llama")
    ids = lm.tokenizer(TEXT[:40])["input_ids"]
    states = _all_states(lm, ids)
    lens = LogitLens(lm.adapter)
    with torch.no_grad():
        final = torch.log_softmax(lens(states[-1], lm.n_layers), -1)
        got = float(kl_to_final(lens, states[1], 1, final))
        p = torch.softmax(lm.adapter.to_logits(states[-1]), -1).double().numpy()
        q = torch.softmax(lm.adapter.to_logits(states[1]), -1).double().numpy()
    expected = np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1))
    assert got == pytest.approx(expected, rel=1e-4)


def _byte_sequences(lm, text: str, length: int) -> list[list[int]]:
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    return [ids[start:start + length] for start in range(0, len(ids) - length + 1, length)]


def test_tuned_lens_training_lowers_kl_below_the_logit_lens_on_held_out_text(tmp_path, capsys):
    lm = tiny_lm("llama", n_layers=4)
    train = _byte_sequences(lm, TEXT * 3, 40)
    held_out = _byte_sequences(lm, "A different text, held out: the river rose after three days of rain in the valley.", 40)
    lens, losses = train_tuned_lens(lm, train, held_out, progress=False, steps=40, positions_per_step=32,
                                    learning_rate=1e-2, seed=0)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3])  # the training loss goes down
    logit_kl = np.array(lens.config.held_out_kl_logit)
    tuned_kl = np.array(lens.config.held_out_kl_tuned)
    assert tuned_kl[-1] == pytest.approx(0.0, abs=1e-5) and logit_kl[-1] == pytest.approx(0.0, abs=1e-5)
    assert np.all(tuned_kl[:-1] < logit_kl[:-1]), (tuned_kl, logit_kl)
    held_out_states = torch.cat([_all_states(lm, ids) for ids in held_out], dim=1)
    np.testing.assert_allclose(held_out_kl(lens, held_out_states), tuned_kl, rtol=1e-5)
    assert "layer  logit-lens  tuned-lens" in capsys.readouterr().out

    # Save and load give the same lens; a lens for another model is refused with a one-line error.
    lens.save(tmp_path / "lens")
    loaded = TunedLens.load(tmp_path / "lens", lm)
    states = _all_states(lm, held_out[0])
    with torch.no_grad():
        torch.testing.assert_close(loaded.all_layers(states), lens.all_layers(states))
    assert loaded.config.held_out_kl_tuned == lens.config.held_out_kl_tuned
    with pytest.raises(DataError, match="n_layers"):
        TunedLens.load(tmp_path / "lens", tiny_lm("llama", n_layers=3))


def test_translator_l_reads_the_state_of_layer_l():
    """Only translator l changes the readout of layer l (layer L has none): no shift by one layer."""
    lm = tiny_lm("llama")
    states = _all_states(lm, lm.tokenizer(TEXT[:30])["input_ids"])
    lens = TunedLens.for_model(lm)
    base = lens.all_layers(states).detach()
    with torch.no_grad():
        lens.translators[1].bias.fill_(0.5)
    changed = lens.all_layers(states).detach()
    differs = [not torch.allclose(base[layer], changed[layer]) for layer in range(lm.n_layers + 1)]
    assert differs == [False, True, False, False]
