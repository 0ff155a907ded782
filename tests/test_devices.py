"""The multi-device and half-precision paths, on CPU: a model whose blocks accelerate splits between the
CPU and disk offload, and a float16 forward with the lens head in float32, both against the plain fp32 run."""

import copy

import numpy as np
import pytest
import torch
from single_thread import one_torch_thread  # noqa: F401  (autouse fixture)
from tiny import tiny_lm
from transformers import AutoModelForCausalLM

from layerprobe import engine
from layerprobe.models import Adapter, LoadedModel
from layerprobe.tasks.factual import factual_items

ITEMS = factual_items(18, seed=0)
FP16_TOLERANCE = 0.1
"""Nats, on summed candidate log-probs of up to ~190 nats; measured 0.013-0.035 on the four tiny architectures."""


def test_blocks_offloaded_to_disk_score_like_the_plain_model(tmp_path):
    plain = tiny_lm("llama", n_layers=4)
    plain.model.save_pretrained(tmp_path / "model")
    # ~215 kB of fp32 weights, 200 kB allowed on the CPU: the embeddings and the first blocks stay on
    # the CPU, the last block, the final norm and the unembedding go to disk.
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model", dtype=torch.float32, device_map="auto",
                                                 max_memory={"cpu": 200_000}, offload_folder=str(tmp_path / "offload"))
    placed = model.hf_device_map
    assert "cpu" in {placed.get(f"model.layers.{i}") for i in range(4)} and "disk" in placed.values()
    offloaded = model.model.layers[3].self_attn.q_proj
    assert offloaded.weight.device.type == "meta" and offloaded._hf_hook.offload  # loaded from disk by accelerate's hook
    assert model.lm_head._hf_hook.offload  # the lens head too
    lm = LoadedModel("offloaded", model, plain.tokenizer, Adapter(model), model.get_input_embeddings().weight.device,
                     torch.float32)

    want = engine.score_items(plain, ITEMS, features=True, progress=False, use_cache=False)
    got = engine.score_items(lm, ITEMS, features=True, progress=False, use_cache=False)
    for a, b in zip(want.logprob, got.logprob):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got.prompt_features, want.prompt_features, rtol=0, atol=1e-5)  # the hooks saw every block
    for a, b in zip(want.candidate_features, got.candidate_features):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "gemma3_text", "gpt_neox"])
def test_float16_forward_with_float32_head_stays_close_to_float32(model_type):
    fp32 = tiny_lm(model_type)
    half = copy.deepcopy(fp32.model).half()
    fp16 = LoadedModel("fp16", half, fp32.tokenizer, Adapter(half), torch.device("cpu"), torch.float16)

    want = engine.score_items(fp32, ITEMS, progress=False, use_cache=False)
    got = engine.score_items(fp16, ITEMS, progress=False, use_cache=False)
    assert half.get_output_embeddings().weight.dtype == torch.float16
    assert fp16.adapter._head()[2].weight.dtype == torch.float32  # the lens head ran in fp32
    delta = max(np.abs(a - b).max() for a, b in zip(want.logprob, got.logprob))
    assert 0 < delta < FP16_TOLERANCE  # not zero: the forward really ran in half precision
    for a, b in zip(want.logprob, got.logprob):
        np.testing.assert_array_equal(a.argmax(axis=0), b.argmax(axis=0))  # the same choice at every layer
