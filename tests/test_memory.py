"""The memory planner: sizes against real models, placement on fake devices, and the early one-line refusal."""

import pytest
import torch
import transformers
from tiny import byte_tokenizer, tiny_config

import plan_memory as plan_script
import probe_math
from layerprobe import cli, memory
from layerprobe.errors import LayerprobeError
from layerprobe.memory import GIB, engine_needs, model_config, plan_memory
from layerprobe.models import REGISTRY, load_model

# Parameter counts published with the checkpoints (model cards / config.json), independent of our numbers.
PUBLISHED_PARAMETERS = {
    "smollm2-135m": 134_515_008, "gemma3-270m": 268_098_176, "gpt2": 124_439_808, "gpt2-xl": 1_557_611_200,
    "llama-7b": 6_738_415_616, "llama-13b": 13_015_864_320, "llama-70b": 68_976_648_192,
    "llama3-8b": 8_030_261_248, "pythia-1b": 1_011_781_632, "pythia-6.9b": 6_857_302_016,
}
SMALL_TOKENS = 16  # batch token budget of the tests: the weights, not the activations, decide


@pytest.fixture
def tiny_folder(tmp_path):
    """A saved tiny llama (8 blocks, d=64) whose plan needs only its config.json."""
    config = tiny_config("llama", n_layers=8, d_model=64)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(tmp_path / "tiny")
    byte_tokenizer().save_pretrained(tmp_path / "tiny")
    return str(tmp_path / "tiny"), model


def test_registry_configs_have_the_published_parameter_counts():
    assert set(PUBLISHED_PARAMETERS) == set(REGISTRY)
    from accelerate import init_empty_weights

    for name, count in PUBLISHED_PARAMETERS.items():
        with init_empty_weights():
            model = transformers.AutoModelForCausalLM.from_config(model_config(name))
        model.tie_weights()
        assert sum(p.numel() for p in model.parameters()) == count, name


def test_weights_are_the_real_models_bytes(tiny_folder):
    folder, model = tiny_folder
    for dtype, size in (("float32", 4), ("float16", 2)):
        plan = plan_memory(folder, "cpu", dtype, memory={"cpu": 10 * GIB})
        tensors = [*model.parameters(), *model.buffers()]  # the rotary frequencies are a buffer
        assert plan.weights == sum(t.numel() for t in tensors) * size
        assert plan.fits and [use.layers for use in plan.devices] == [8]


def test_fits_on_one_gpu(tiny_folder):
    folder, _ = tiny_folder
    plan = plan_memory(folder, "auto", "float16", memory={0: 2 * GIB, 1: 2 * GIB}, batch_tokens=SMALL_TOKENS)
    assert plan.fits
    assert sum(use.layers for use in plan.devices) == 8
    assert all(use.total <= use.capacity for use in plan.devices)


def test_spreads_over_gpus_when_one_is_too_small(tiny_folder, monkeypatch):
    folder, _ = tiny_folder
    monkeypatch.setattr(memory, "CUDA_OVERHEAD", 0)
    weights = plan_memory(folder, "cpu", "float16", memory={"cpu": GIB}).weights
    gpus = {i: int(weights * 0.6) for i in range(4)}  # no one GPU holds the weights
    plan = plan_memory(folder, "auto", "float16", memory=gpus, batch_tokens=SMALL_TOKENS)
    assert plan.fits, plan.problem
    used = [use for use in plan.devices if use.layers]
    assert len(used) >= 2 and sum(use.layers for use in used) == 8
    assert all(use.total <= use.capacity for use in plan.devices)
    assert sum(use.weights for use in plan.devices) == weights
    # the head's device also holds every layer's states and the head: the plan counts them there
    needs = engine_needs(model_config(folder), torch.float16, SMALL_TOKENS)
    head_device = [use for use in plan.devices if use.engine >= needs.head][-1]
    assert head_device.engine >= needs.head + (2 * 9 - head_device.layers) * needs.states_per_layer
    assert set(plan.device_map.values()) <= set(gpus)


def test_refuses_when_nothing_fits(tiny_folder, monkeypatch):
    folder, _ = tiny_folder
    monkeypatch.setattr(memory, "CUDA_OVERHEAD", 0)
    weights = plan_memory(folder, "cpu", "float16", memory={"cpu": GIB}).weights
    plan = plan_memory(folder, "auto", "float16", memory={0: weights // 3, 1: weights // 3}, batch_tokens=SMALL_TOKENS)
    assert not plan.fits
    with pytest.raises(LayerprobeError) as error:
        plan.check()
    assert "does not fit" in str(error.value) and "\n" not in str(error.value)


def test_auto_loads_with_the_planned_device_map(tiny_folder, monkeypatch):
    folder, model = tiny_folder
    seen = []
    real = transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: seen.append(k.get("device_map")) or real(*a, **k))
    lm = load_model(folder, device="auto", dtype="float32")
    assert seen == [plan_memory(folder, "auto", "float32").device_map] and seen[0] is not None
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        torch.testing.assert_close(lm.model(ids).logits, model.eval()(ids).logits)


def test_refusal_is_one_line_before_any_weights_load(monkeypatch, capsys, tmp_path):
    """llama-70b in fp32 on this CPU: the plan refuses (exit 2, one line) and nothing is read or downloaded."""
    def no_loading(*args, **kwargs):
        raise AssertionError("weights or tokenizer loaded")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_loading)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_loading)
    with pytest.raises(SystemExit) as exit_info:
        cli.run(probe_math.main, ["--model", "llama-70b", "--device", "cpu", "--dtype", "float32",
                                  "--method", "lens", "--limit", "1", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: llama-70b in float32 does not fit") and "\n" not in err
    assert not list(tmp_path.iterdir())


def test_plan_memory_script(capsys):
    plan_script.main(["--model", "llama-70b", "--dtype", "float16", "--gpus", "2x80"])
    out = capsys.readouterr().out
    assert "cuda:0" in out and "cuda:1" in out
    with pytest.raises(SystemExit) as exit_info:
        cli.run(plan_script.main, ["--model", "llama-70b", "--dtype", "float16", "--gpus", "1x80"])
    assert exit_info.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
