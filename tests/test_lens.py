"""Logit lens and tuned lens: exactness at the last layer, KL against a hand computation, training, save/load."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from tiny import tiny_lm

from layerprobe.engine import hidden_states_at
from layerprobe.errors import DataError
from layerprobe.lens import (
    LogitLens, TunedLens, TunedLensConfig, default_lens_folder, held_out_kl, kl_to_final,
    cached_states, fine_tune, least_squares_start, train_tuned_lens, unembed_kl,
)

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


HELD_OUT = "A different text, held out: the river rose after three days of rain in the valley, and the farmers waited."


def test_tuned_lens_training_beats_the_logit_lens_on_held_out_text(tmp_path, capsys):
    """Least squares beats the identity on held-out text, and the trained lens stays below the logit lens."""
    lm = tiny_lm("llama", n_layers=4)
    train = _byte_sequences(lm, TEXT * 3, 40)
    held_out = _byte_sequences(lm, HELD_OUT, 40)
    lens, _ = train_tuned_lens(lm, train, held_out, progress=False, steps=5, positions_per_step=64, seed=0)
    logit_kl, start_kl, tuned_kl = (np.array(getattr(lens.config, f"held_out_kl_{name}")) for name in ("logit", "start", "tuned"))
    assert tuned_kl[-1] == pytest.approx(0.0, abs=1e-5) and logit_kl[-1] == pytest.approx(0.0, abs=1e-5)
    assert np.all(start_kl[:-1] < 0.9 * logit_kl[:-1]), (start_kl, logit_kl)  # least squares beats the identity
    assert np.all(tuned_kl[:-1] < 0.9 * logit_kl[:-1]), (tuned_kl, logit_kl)
    held_out_states = torch.cat([_all_states(lm, ids) for ids in held_out], dim=1)
    assert lens.config.held_out_positions == held_out_states.shape[1]
    np.testing.assert_allclose(held_out_kl(lens, held_out_states), tuned_kl, rtol=1e-5)
    np.testing.assert_allclose(held_out_kl(LogitLens(lm.adapter), held_out_states), logit_kl, rtol=1e-5)
    low, high = np.array(lens.config.held_out_kl_tuned_ci).T
    assert np.all(low <= tuned_kl + 1e-9) and np.all(tuned_kl <= high + 1e-9)
    assert lens.config.train_cpu_seconds > 0
    assert "layer  logit-lens  least-squares  tuned-lens" in capsys.readouterr().out

    # Save and load give the same lens; a lens for another model is refused with a one-line error.
    lens.save(tmp_path / "lens")
    loaded = TunedLens.load(tmp_path / "lens", lm)
    states = _all_states(lm, held_out[0])
    with torch.no_grad():
        torch.testing.assert_close(loaded.all_layers(states), lens.all_layers(states))
    assert loaded.config == lens.config
    with pytest.raises(DataError, match="n_layers"):
        TunedLens.load(tmp_path / "lens", tiny_lm("llama", n_layers=3))


def test_fine_tuning_on_kl_lowers_the_training_and_held_out_kl():
    """From the identity (no least-squares start), Nesterov SGD on the fused bf16 KL lowers the KL of every layer."""
    lm = tiny_lm("llama", n_layers=4)
    states = cached_states(lm, _byte_sequences(lm, TEXT * 3, 40), progress=False)
    held_out = cached_states(lm, _byte_sequences(lm, HELD_OUT, 40), progress=False)
    lens = TunedLens.for_model(lm, steps=40, positions_per_step=256, optimizer="sgd", learning_rate=1.0)
    before = held_out_kl(lens, held_out)
    losses = fine_tune(lens, states, progress=False)
    after = held_out_kl(lens, held_out)
    assert losses[0] == pytest.approx(np.mean(held_out_kl(TunedLens.for_model(lm), states)[:-1]), rel=0.02)
    assert np.mean(losses[-3:]) < 0.7 * losses[0], losses
    assert np.all(after[:-1] < 0.8 * before[:-1]), (after, before)


def test_least_squares_start_is_ridge_regression_from_the_input_of_each_block():
    """Translator l is fitted on transformers' hidden_states[l] (the *input* of block l, tuned-lens's convention)."""
    from sklearn.linear_model import Ridge

    lm = tiny_lm("llama", n_layers=3)
    ids = lm.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    states = _all_states(lm, ids)
    lens = TunedLens.for_model(lm, ridge=1e-2)
    least_squares_start(lens, states)
    with torch.no_grad():
        inputs = lm.model(torch.tensor([ids]), output_hidden_states=True).hidden_states  # [0] = embeddings
    final = states[-1].double().numpy()
    target = final / np.sqrt((final ** 2).mean(-1, keepdims=True))
    for layer in range(lm.n_layers):
        x = inputs[layer][0].double().numpy()
        centred = x - x.mean(0)
        alpha = 1e-2 * np.trace(centred.T @ centred) / x.shape[1]
        ridge = Ridge(alpha=alpha).fit(x, target)
        translator = lens.translators[layer]
        np.testing.assert_allclose(translator.weight.detach().numpy() + np.eye(x.shape[1]), ridge.coef_, atol=2e-4)
        np.testing.assert_allclose(translator.bias.detach().numpy(), ridge.intercept_, atol=2e-4)


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_fused_kl_gradient_equals_autograd(model_type):
    """The one-pass KL and gradient of fine-tuning (softcap included) equal autograd through the fp32 lens."""
    lm = tiny_lm(model_type)
    states = _all_states(lm, lm.tokenizer(TEXT[:50])["input_ids"])
    lens = TunedLens.for_model(lm)
    with torch.no_grad():
        for translator in lens.translators:
            translator.weight.normal_(0, 0.05)
    final = torch.log_softmax(lens(states[-1], lm.n_layers), -1).detach()
    hidden = states[1].clone().requires_grad_(True)
    expected = kl_to_final(lens, hidden, 1, final) * hidden.shape[0]
    (expected_grad,) = torch.autograd.grad(expected, hidden)
    hidden = states[1].clone().requires_grad_(True)
    unembed = lm.adapter.fp32_unembed
    got = unembed_kl(lm.adapter.head_input(lens.transform(hidden, 1)), unembed.weight, unembed.bias,
                     lm.adapter.softcap, final)
    (got_grad,) = torch.autograd.grad(got, hidden)
    assert float(got.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    torch.testing.assert_close(got_grad, expected_grad, rtol=1e-4, atol=1e-6)


def test_cache_key_changes_with_every_training_setting_and_the_version():
    base = TunedLensConfig(model="m", n_layers=3, d_model=8)
    assert base.key() == TunedLensConfig(model="m", n_layers=3, d_model=8).key()
    changed = [replace(base, **{name: value}) for name, value in (
        ("model", "other"), ("weights", "0" * 64), ("corpus", "sotu"), ("train_tokens", 1), ("held_out_tokens", 1), ("ridge", 0.5),
        ("steps", 1), ("positions_per_step", 1), ("optimizer", "sgd"), ("learning_rate", 0.1), ("momentum", 0.5),
        ("train_head", "float32"), ("seed", 1), ("version", base.version + 1))]
    keys = {config.key() for config in changed}
    assert len(keys) == len(changed) and base.key() not in keys
    measured = replace(base, held_out_kl_tuned=[1.0], train_cpu_seconds=3.0, held_out_positions=5)
    assert measured.key() == base.key()  # what was measured afterwards is not a setting
    assert default_lens_folder("m", "default", base) != default_lens_folder("m", "default", changed[-1])


def test_a_changed_weight_gets_its_own_lens_cache_folder():
    """A checkpoint fine-tuned under the same name (one weight of the last block changed) must not reuse
    the lens trained for the original weights."""
    lm = tiny_lm("llama")
    before = TunedLens.for_model(lm).config
    with torch.no_grad():
        next(lm.model.model.layers[-1].parameters()).view(-1)[0] += 1e-3
    after = TunedLens.for_model(lm).config
    assert (before.model, before.n_layers) == (after.model, after.n_layers)
    assert default_lens_folder("m", "default", before) != default_lens_folder("m", "default", after)


def test_translator_layout_pins_which_state_each_translator_reads():
    """Identity translators give the logit lens at every layer; layer L is the model's own logits; a known
    map in translator l changes layer l's readout only, to the head applied to the mapped state."""
    lm = tiny_lm("llama")
    ids = lm.tokenizer(TEXT[:30])["input_ids"]
    states = _all_states(lm, ids)
    lens = TunedLens.for_model(lm)
    with torch.no_grad():
        base = lens.all_layers(states)
        torch.testing.assert_close(base, LogitLens(lm.adapter).all_layers(states))
        torch.testing.assert_close(base[-1], lm.model(torch.tensor([ids])).logits[0].float(), atol=1e-4, rtol=1e-4)
        generator = torch.Generator().manual_seed(0)
        matrix = torch.randn(states.shape[-1], states.shape[-1], generator=generator) * 0.3
        shift = torch.randn(states.shape[-1], generator=generator)
        lens.translators[1].weight.copy_(matrix - torch.eye(states.shape[-1]))
        lens.translators[1].bias.copy_(shift)
        changed = lens.all_layers(states)
        torch.testing.assert_close(changed[1], lm.adapter.to_logits(states[1] @ matrix.T + shift))
    differs = [not torch.allclose(base[layer], changed[layer]) for layer in range(lm.n_layers + 1)]
    assert differs == [False, True, False, False]
