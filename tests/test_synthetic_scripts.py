"""train_synthetic.py / probe_synthetic.py: user errors, runs that reload, unfinished runs."""

import shutil

import pytest
import torch

import probe_synthetic
import train_synthetic
from layerprobe.cli import run
from layerprobe.synthetic.runs import RunConfig, load_run, train_run


@pytest.mark.parametrize("argv,message", [
    (["--world", "cfg", "--width", "30", "--heads", "4"], "not divisible"),
    (["--world", "cfg", "--arch", "llama", "--absolute"], "rotary positions only"),
    (["--world", "cfg", "--grammar", "nope"], "unknown grammar"),
    (["--world", "bios", "--people", "1"], "--people must be"),
])
def test_bad_training_flags_fail_in_one_line_and_write_nothing(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        run(train_synthetic.main, argv + ["--out", str(tmp_path / "run"), "--data", str(tmp_path / "data")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()


def test_probe_of_a_missing_run_fails_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(probe_synthetic.main, ["--run", str(tmp_path / "nothing"), "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and "no run.json" in capsys.readouterr().err


def test_a_run_reloads_and_an_unfinished_run_gives_its_checkpoint(tmp_path):
    config = RunConfig(world="bios", layers=1, width=16, heads=2, steps=4, batch=4, people=20,
                       mode="pretrain-finetune", augment=True, multi=2, finetune_steps=2)
    trained = train_run(config, tmp_path / "run", tmp_path / "data", progress=False)
    assert (tmp_path / "data" / "train_run-pretrain.csv").exists() and (tmp_path / "data" / "train_run.csv").exists()
    loaded_config, loaded = load_run(tmp_path / "run")
    assert loaded_config == config and loaded.name == "run" and loaded.n_layers == 1
    ids = torch.tensor([[1, 5, 6, 7]])
    assert torch.allclose(loaded.model(input_ids=ids).logits, trained.model(input_ids=ids).logits, atol=1e-5)
    shutil.rmtree(tmp_path / "run" / "model")  # as if interrupted before the end
    _, partial = load_run(tmp_path / "run")
    assert partial.name == "run-step2"
    assert torch.allclose(partial.model(input_ids=ids).logits, trained.model(input_ids=ids).logits, atol=1e-5)
    with pytest.raises(SystemExit):  # the same folder with another configuration is refused
        run(train_synthetic.main, ["--world", "cfg", "--out", str(tmp_path / "run"), "--data", str(tmp_path / "data")])


def _config(argv: list[str]) -> RunConfig:
    args = train_synthetic.parse(argv)
    return RunConfig(**{name: getattr(args, name) for name in RunConfig.__dataclass_fields__})


def test_the_bios_default_is_the_measured_size_and_flags_override_it():
    """The bioS default is the size measured in the README (part 3.1: 90.7% vs 12.7% out-of-distribution QA)."""
    assert _config(["--world", "bios", "--augment"]) == RunConfig(
        world="bios", augment=True, people=200, layers=4, width=64, heads=4, steps=1500, batch=32, lr=3e-3)
    mine = _config(["--world", "bios", "--lr", "1e-3", "--people", "50"])
    assert (mine.lr, mine.people, mine.width) == (1e-3, 50, 64)
    assert _config(["--world", "cfg"]).grammar == "cfg3b"  # the bioS sizes do not touch cfg's own defaults
