"""LoRA versus full fine-tuning of an iGSM run on retry data: what trains, saving and loading, resumes, bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from single_thread import one_torch_thread  # noqa: F401  (autouse fixture)

import train_igsm
from layerprobe.cli import run
from layerprobe.results import read_results
from layerprobe.synthetic import igsm, igsm_finetune, igsm_lm
from layerprobe.synthetic.igsm_runs import RUN_FILE, IGSMRun, load_run
from layerprobe.synthetic.runs import with_lora
from layerprobe.synthetic.train import load_trained, save_model

VOCAB = igsm_lm.make_vocab()
START = IGSMRun(layers=1, width=16, heads=2, steps=2, batch=2)
PROJECTIONS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def start_run(root: Path) -> Path:
    """A finished starting run on disk, as train_igsm writes it (random weights: only the mechanics are tested)."""
    folder = root / START.name()
    folder.mkdir(parents=True)
    save_model(START.build(len(VOCAB)), folder / "model")
    VOCAB.save(folder / "vocab.json")
    (folder / RUN_FILE).write_text(json.dumps(dataclasses.asdict(START)), encoding="utf-8")
    return folder


def finetune(root: Path, method: str, steps: int = 2) -> tuple[IGSMRun, object]:
    spec = igsm_finetune.finetune_spec(START, method, retry=0.5, steps=steps, lr=1e-2, batch=3, curve_every=2)
    lm = igsm_finetune.finetune_igsm(root / START.name(), spec, root / "runs", root / "data", n_per_ops=1, progress=False)
    return spec, lm


def checkpoint_weights(root: Path, spec: IGSMRun) -> dict[str, torch.Tensor]:
    return torch.load(root / "runs" / spec.name() / "checkpoint.pt", weights_only=False)["model"]


def test_lora_trains_only_its_adapters_on_every_projection_and_full_fine_tuning_moves_the_base(tmp_path):
    base = load_trained(start_run(tmp_path)).model.state_dict()
    spec, _ = finetune(tmp_path, "lora8")
    tuned = checkpoint_weights(tmp_path, spec)
    adapters = {key for key in tuned if "lora_" in key}
    assert {key.split(".")[-4] for key in adapters} == PROJECTIONS  # ...q_proj.lora_A.default.weight
    assert all((tuned[key] != 0).any() for key in adapters if "lora_B" in key)  # peft starts B at zero
    plain = {key.replace("base_model.model.", "").replace(".base_layer", ""): value
             for key, value in tuned.items() if key not in adapters}
    assert plain.keys() == base.keys()
    assert all(torch.equal(plain[key], base[key]) for key in base)  # bit-identical base weights
    rows = read_results(tmp_path / "data" / f"igsm-finetune_{spec.name()}.csv")
    d, rank = START.width, 8  # per block: q, k, v, o (d -> d), gate and up (d -> 4d), down (4d -> d)
    assert set(rows["trainable_params"]) == {START.layers * rank * (4 * 2 * d + 3 * 5 * d)}

    full, _ = finetune(tmp_path, "full")
    moved = checkpoint_weights(tmp_path, full)
    assert moved.keys() == base.keys()
    assert all(not torch.equal(moved[key], base[key]) for key in base if key.endswith("proj.weight"))
    assert set(read_results(tmp_path / "data" / f"igsm-finetune_{full.name()}.csv")["trainable_params"]) == {
        sum(value.numel() for value in base.values())}
    assert full.lr == pytest.approx(spec.lr / 3)


def test_the_merged_model_loads_back_through_load_run_and_scores_as_the_adapters_did(tmp_path):
    start = start_run(tmp_path)
    spec, lm = finetune(tmp_path, "lora8")
    loaded_spec, loaded = load_run(tmp_path / "runs" / spec.name())
    assert loaded_spec == spec and loaded.name == spec.name()
    adapted = with_lora(load_trained(start).model, 8, targets=igsm_finetune.LORA_TARGETS)
    adapted.load_state_dict(checkpoint_weights(tmp_path, spec))
    adapted.eval()
    problems = igsm_lm.eval_problems(START.config(), 3, "test", seed=START.seed)
    ids = torch.tensor([VOCAB.encode(igsm.prompt_tokens(problems[0]), bos=True)])
    with torch.no_grad():
        want = adapted(input_ids=ids).logits
        assert not torch.allclose(want, load_trained(start).model(input_ids=ids).logits, atol=1e-4)  # it did train
        torch.testing.assert_close(loaded.model(input_ids=ids).logits, want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(lm.model(input_ids=ids).logits, want, atol=1e-5, rtol=1e-5)
    solved = igsm_lm.solve(loaded.model, VOCAB, problems, max_new_tokens=20, progress=False)
    assert solved == igsm_lm.solve(adapted, VOCAB, problems, max_new_tokens=20, progress=False)


class Interrupted(Exception):
    pass


def test_an_interrupted_fine_tuning_resumes_to_the_same_rows_and_weights_each_written_once(tmp_path, monkeypatch):
    start_run(tmp_path / "a")
    start_run(tmp_path / "b")
    spec, _ = finetune(tmp_path / "a", "lora8", steps=4)
    real = igsm_lm.batch_fn

    def failing(*args, **kwargs):
        make = real(*args, **kwargs)

        def batch(step: int):
            if step == 3:
                raise Interrupted
            return make(step)
        return batch
    monkeypatch.setattr(igsm_lm, "batch_fn", failing)
    with pytest.raises(Interrupted):
        finetune(tmp_path / "b", "lora8", steps=4)
    csv = tmp_path / "b" / "data" / f"igsm-finetune_{spec.name()}.csv"
    assert sorted(set(read_results(csv)["step"])) == [0, 2]
    monkeypatch.setattr(igsm_lm, "batch_fn", real)
    finetune(tmp_path / "b", "lora8", steps=4)
    first = csv.read_bytes()
    finetune(tmp_path / "b", "lora8", steps=4)  # finished: nothing is graded or written again
    assert csv.read_bytes() == first
    keys = ["subtask", "language", "metric"]
    resumed = read_results(csv).sort_values(keys).reset_index(drop=True)
    straight = read_results(tmp_path / "a" / "data" / csv.name).sort_values(keys).reset_index(drop=True)
    assert not resumed.duplicated(keys).any() and sorted(set(resumed["step"])) == [0, 2, 4]
    assert set(resumed["language"]) == {"train", "test"} and {"accuracy", "retry_share"} <= set(resumed["metric"])
    assert resumed[keys + ["value"]].equals(straight[keys + ["value"]])
    a, b = checkpoint_weights(tmp_path / "a", spec), checkpoint_weights(tmp_path / "b", spec)
    assert all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.parametrize("argv, message", [
    (["--finetune-from", "nowhere", "--finetune", "lora0"], "full or lora<rank>"),
    (["--finetune-from", "nowhere", "--finetune", "qlora"], "full or lora<rank>"),
    (["--finetune", "full"], "needs --finetune-from"),
    (["--finetune-from", "nowhere", "--detour", "0.2"], "--detour trains from scratch"),
    (["--detour-body"], "--detour-body needs --detour"),
    (["--finetune-from", "nowhere"], "not an iGSM run"),
])
def test_bad_finetune_input_is_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(train_igsm.main, argv + ["--out", "/nonexistent/runs", "--data", "/nonexistent/data"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
