"""The engine against the naive reference: packing, masks, positions and hooks must not change a score."""

import numpy as np
import pytest
import torch
from tiny import tiny_lm

from layerprobe import engine
from layerprobe.errors import LayerprobeError
from layerprobe.reference import naive_score_items
from layerprobe.tasks.base import MCItem

ITEMS = [
    MCItem("Q: 2 + 3 = ?\nA:", [" 5", " 6", " 23", " five hundred"], [0]),
    MCItem("The capital of France is", [" Paris", " Lyon", " Rome"], [0]),
    MCItem("x", [" a", " bb", " ccc", " dddd", " e"], [2], meta={"subtask": "odd"}),
    MCItem("A much longer prompt, so that padding matters when it shares a batch with short ones:",
           [" yes", " no"], [1]),
]
ARCHS = ["llama", "gpt2", "gpt_neox", "gemma3_text"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERPROBE_CACHE", str(tmp_path))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("lens", ["norm", "raw"])
def test_engine_equals_naive_reference(arch, lens):
    lm = tiny_lm(arch)
    expected = naive_score_items(lm, ITEMS, lens=lens)
    got = engine.score_items(lm, ITEMS, lens=lens, progress=False)
    for want, have in zip(expected, got.logprob):
        assert have.shape == (len(want), lm.n_layers + 1)
        np.testing.assert_allclose(have, want, atol=1e-4, rtol=0)
    # A check that can fail: the layers really differ, so a mix-up of layers would show.
    assert np.ptp(got.logprob[0], axis=1).max() > 0.1


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_batching_and_padding_change_nothing(arch):
    lm = tiny_lm(arch)
    together = engine.score_items(lm, ITEMS, progress=False, use_cache=False, features=True)
    for i, item in enumerate(ITEMS):
        alone = engine.score_items(lm, [item], batch_size=1, progress=False, use_cache=False, features=True)
        np.testing.assert_allclose(together.logprob[i], alone.logprob[0], atol=1e-5)
        np.testing.assert_allclose(together.prompt_features[i], alone.prompt_features[0], atol=1e-5)
        np.testing.assert_allclose(together.candidate_features[i], alone.candidate_features[0], atol=1e-5)


def test_features_are_the_states_of_a_plain_forward():
    lm = tiny_lm("llama")
    item = ITEMS[1]
    scores = engine.score_items(lm, [item], features=True, progress=False)
    prompt_ids = lm.tokenizer(item.prompt)["input_ids"]
    for k, candidate in enumerate(item.candidates):
        candidate_ids = lm.tokenizer(candidate, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            out = lm.model(input_ids=torch.tensor([prompt_ids + candidate_ids]), output_hidden_states=True)
        hidden = torch.stack(out.hidden_states[:-1])[:, 0]  # layers 0..L-1 (the last is normed)
        P = len(prompt_ids)
        np.testing.assert_allclose(scores.prompt_features[0, :-1], hidden[:, P - 1].numpy(), atol=1e-5)
        mean = hidden[:, P:P + len(candidate_ids)].mean(1).numpy()
        np.testing.assert_allclose(scores.candidate_features[0][k, :-1], mean, atol=1e-5)
        normed = lm.adapter.final_norm(torch.from_numpy(scores.prompt_features[0, -1]))
        np.testing.assert_allclose(normed.numpy(), out.hidden_states[-1][0, P - 1].numpy(), atol=1e-5)


def test_last_layer_is_the_models_own_logprob():
    lm = tiny_lm("gemma3_text")  # softcapped logits: the lens must cap too
    scores = engine.score_items(lm, ITEMS[:1], progress=False)
    prompt_ids = lm.tokenizer(ITEMS[0].prompt)["input_ids"]
    for k, candidate in enumerate(ITEMS[0].candidates):
        ids = lm.tokenizer(candidate, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = lm.model(input_ids=torch.tensor([prompt_ids + ids])).logits[0]
        logprobs = torch.log_softmax(logits, -1)
        want = sum(logprobs[len(prompt_ids) - 1 + j, t].item() for j, t in enumerate(ids))
        assert scores.logprob[0][k, -1] == pytest.approx(want, abs=1e-4)


def test_disk_cache_resumes_and_is_keyed_by_weights(tmp_path, monkeypatch):
    lm = tiny_lm("llama")
    first = engine.score_items(lm, ITEMS, progress=False)
    calls = []
    with monkeypatch.context() as patch:  # undoes only this patch, not the test cache folder of conftest
        patch.setattr(engine, "_score_batch", lambda *a, **k: calls.append(1))
        again = engine.score_items(lm, ITEMS, progress=False)  # served from the cache: no forward at all
    assert not calls
    for a, b in zip(first.logprob, again.logprob):
        np.testing.assert_array_equal(a, b)
    other = engine.score_items(tiny_lm("llama", seed=1), ITEMS, progress=False)  # other weights: recomputed
    assert not np.allclose(other.logprob[0], first.logprob[0])


def test_hidden_states_at_matches_plain_forward():
    lm = tiny_lm("gpt2")
    sequences = [[256, 5, 6, 7, 8], [256, 9], [256, 1, 2, 3, 4, 5, 6, 7]]
    positions = [[0, 4], [1], [2, 3, 7]]
    states = engine.hidden_states_at(lm, sequences, positions, progress=False)
    for seq, pos, got in zip(sequences, positions, states):
        with torch.inference_mode():
            out = lm.model(input_ids=torch.tensor([seq]), output_hidden_states=True)
        want = torch.stack(out.hidden_states[:-1])[:, 0, pos]
        assert got.shape == (lm.n_layers + 1, len(pos), 32)
        torch.testing.assert_close(got[:-1], want, atol=1e-5, rtol=0)


def test_bad_inputs_are_one_line_errors():
    lm = tiny_lm("llama")
    with pytest.raises(LayerprobeError, match="candidate '' is empty"):
        engine.score_items(lm, [MCItem("a", ["", " b"], [0])], progress=False)
    with pytest.raises(LayerprobeError, match="unknown lens"):
        engine.score_items(lm, ITEMS, lens="tuned", progress=False)
    with pytest.raises(LayerprobeError, match="outside"):
        engine.hidden_states_at(lm, [[1, 2]], [[5]], progress=False)


def test_out_of_memory_halves_the_batch_and_goes_on(monkeypatch):
    lm = tiny_lm("llama")
    seen = []
    real_capture_run = engine._StateCapture.run

    def flaky_run(self, lm, index, **inputs):
        batch = inputs["input_ids"].shape[0]
        seen.append(batch)
        if batch > 1:
            raise torch.OutOfMemoryError("simulated")
        return real_capture_run(self, lm, index, **inputs)

    monkeypatch.setattr(engine._StateCapture, "run", flaky_run)
    scores = engine.score_items(lm, ITEMS, progress=False, use_cache=False)
    assert seen[0] == len(ITEMS) and seen[-4:] == [1, 1, 1, 1]
    for want, have in zip(naive_score_items(lm, ITEMS), scores.logprob):
        np.testing.assert_allclose(have, want, atol=1e-4)


def test_half_precision_forward_keeps_an_fp32_head():
    full = tiny_lm("llama")
    half = tiny_lm("llama", dtype=torch.bfloat16)
    assert half.adapter.to_logits(torch.zeros(2, 32, dtype=torch.bfloat16)).dtype == torch.float32
    a = engine.score_items(full, ITEMS, progress=False, use_cache=False)
    b = engine.score_items(half, ITEMS, progress=False, use_cache=False)
    for x, y in zip(a.logprob, b.logprob):
        assert np.abs(x - y).max() < 0.5  # bf16 forward noise, not a different computation
        assert np.abs(x - y).max() > 0  # the bf16 forward really ran in bf16
