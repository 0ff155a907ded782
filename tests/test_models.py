"""Model registry, loading errors and the packaged SmolLM2 (real weights, offline)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from layerprobe import engine, models
from layerprobe.errors import LayerprobeError
from layerprobe.tasks.base import MCItem


def test_unknown_alias_lists_the_known_ones():
    with pytest.raises(LayerprobeError, match="unknown model 'llama-9b': use one of smollm2-135m, gemma3-270m"):
        models.model_location("llama-9b")


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(LayerprobeError, match="has no config.json"):
        models.model_location(str(tmp_path))


def test_missing_package_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("LAYERPROBE_CACHE", str(tmp_path))
    monkeypatch.setitem(models.REGISTRY, "ghost", models.PackagedGGUF("no_such_pkg_xyz", "pip install ghost==1.0", "g.gguf"))
    with pytest.raises(LayerprobeError, match="model 'ghost' needs its package: pip install ghost==1.0"):
        models.model_location("ghost")


def test_unsupported_architecture_fails_loudly():
    from transformers import AutoModelForCausalLM, BloomConfig

    model = AutoModelForCausalLM.from_config(BloomConfig(vocab_size=50, hidden_size=16, n_layer=1, n_head=2))
    with pytest.raises(LayerprobeError, match="unsupported architecture 'bloom'"):
        models.Adapter(model)


def test_hub_ids_pass_through_and_registry_resolves():
    assert models.model_location("EleutherAI/pythia-70m") == "EleutherAI/pythia-70m"
    assert models.model_location("llama-7b") == "meta-llama/Llama-2-7b-hf"


@pytest.mark.parametrize("script", ["probe_factual.py", "trace_layers.py"])
def test_cli_error_is_one_line_with_exit_code_2(tmp_path, script):
    """README: an unknown model gives one line, exit code 2, and no output file (the real script, not a stub)."""
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, str(root / script), "--model", "nope", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: unknown model 'nope'"), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def smollm2():
    return models.load_model("smollm2-135m")


@pytest.mark.slow
def test_packaged_smollm2_knows_paris(smollm2):
    assert smollm2.n_layers == 30 and smollm2.adapter.model_type == "llama"
    ids = smollm2.tokenizer("The capital of France is", return_tensors="pt")
    with torch.inference_mode():
        logits = smollm2.model(**ids).logits[0, -1]
    assert smollm2.tokenizer.decode(logits.argmax()) == " Paris"


@pytest.mark.slow
def test_engine_last_layer_equals_smollm2_logprobs(smollm2):
    item = MCItem("The capital of France is", [" Paris", " Berlin", " a city in Europe"], [0])
    scores = engine.score_items(smollm2, [item], progress=False, use_cache=False)
    prompt_ids = smollm2.tokenizer(item.prompt)["input_ids"]
    for k, candidate in enumerate(item.candidates):
        ids = smollm2.tokenizer(candidate, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logprobs = torch.log_softmax(smollm2.model(input_ids=torch.tensor([prompt_ids + ids])).logits[0], -1)
        want = sum(logprobs[len(prompt_ids) - 1 + j, t].item() for j, t in enumerate(ids))
        assert scores.logprob[0][k, -1] == pytest.approx(want, abs=1e-3)
    assert np.argmax(scores.logprob[0][:, -1]) == 0  # Paris wins at the last layer
