"""Training on two processes (torchrun, gloo on the CPU) follows the 1-process run, only the main process
writes, and runs interrupted under two processes resume under two and under one."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import ddp_worker
import train_synthetic
from layerprobe.errors import LayerprobeError
from layerprobe.synthetic.train import _share, build_model, lr_at, train

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-5
"""Two processes add the two halves' gradients in another order than one process sums the whole
batch: measured 3e-7 on the weights (of magnitude ~1) and 8e-7 on the logged losses after 6-10 steps."""


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model" / "model.safetensors")


def assert_close_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=atol, msg=name)


def assert_same_curve(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.drop(columns="loss"), b.drop(columns="loss"))
    assert (a["loss"] - b["loss"]).abs().max() < TOLERANCE


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> Path:
    """The output folder of tests/ddp_worker.py run by two processes."""
    out = tmp_path_factory.mktemp("two")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    str(ROOT / "tests" / "ddp_worker.py"), str(out)], check=True, cwd=ROOT, env=env, timeout=600)
    return out


@pytest.mark.slow
def test_the_script_on_two_processes_trains_the_one_process_model(two, tmp_path):
    one = tmp_path / "one"
    train_synthetic.main(ddp_worker.SCRIPT_ARGS + ["--out", str(one / "script"), "--data", str(one / "data")])
    assert_close_weights(weights(one / "script"), weights(two / "script"), TOLERANCE)
    curve = pd.read_csv(two / "data" / "train_script.csv")
    assert_same_curve(pd.read_csv(one / "data" / "train_script.csv"), curve)
    assert curve["loss"].iloc[-1] < curve["loss"].iloc[0]
    for name in ("run.json", "vocab.json"):
        assert (two / "script" / name).read_text() == (one / "script" / name).read_text()


@pytest.mark.slow
def test_masked_batches_shared_unevenly_train_the_one_process_model(two, tmp_path):
    one = ddp_worker.new_model()
    train(one, ddp_worker.masked_batch, out_dir=tmp_path / "one", curve_csv=tmp_path / "one.csv", **ddp_worker.RUN)
    assert_close_weights(one.state_dict(), weights(two / "whole"), TOLERANCE)
    whole = pd.read_csv(two / "whole.csv")
    assert_same_curve(pd.read_csv(tmp_path / "one.csv"), whole)
    assert whole["loss"].iloc[-1] < 0.7 * whole["loss"].iloc[0]


@pytest.mark.slow
def test_runs_interrupted_on_two_processes_resume_on_two_and_on_one(two):
    assert_close_weights(weights(two / "resumed"), weights(two / "whole"), 0)  # same processes, same sums
    pd.testing.assert_frame_equal(pd.read_csv(two / "resumed.csv"), pd.read_csv(two / "whole.csv"))

    saved = torch.load(two / "interrupted" / "checkpoint.pt", weights_only=False)
    assert saved["step"] == 6 and not (two / "interrupted" / "model").exists()
    resumed = ddp_worker.new_model()
    train(resumed, ddp_worker.masked_batch, out_dir=two / "interrupted", curve_csv=two / "interrupted.csv",
          **ddp_worker.RUN)
    assert_close_weights(resumed.state_dict(), weights(two / "whole"), TOLERANCE)
    assert_same_curve(pd.read_csv(two / "interrupted.csv"), pd.read_csv(two / "whole.csv"))


@pytest.mark.slow
def test_only_the_main_process_writes(two):
    main, other = (json.loads((two / f"writes_{rank}.json").read_text()) for rank in (0, 1))
    assert other == []
    written = {Path(path).relative_to(two).as_posix() for path in main}
    assert {"whole/checkpoint.pt", "whole/model", "whole.csv", "script/run.json", "script/vocab.json",
            "data/train_script.csv"} <= written


def test_one_process_runs_the_plain_loop_exactly():
    """train() alone against AdamW, the schedule and the clipping written out by hand."""
    steps, lr, warmup = 6, 3e-3, 2
    model = build_model("llama", 7, 1, 16, 2, 32, seed=3)
    plain = build_model("llama", 7, 1, 16, 2, 32, seed=3)
    train(model, ddp_worker.masked_batch, steps=steps, lr=lr, warmup=warmup, weight_decay=0.1, progress=False)
    matrices = [p for p in plain.parameters() if p.dim() >= 2]
    vectors = [p for p in plain.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": matrices, "weight_decay": 0.1}, {"params": vectors, "weight_decay": 0.0}],
                                  lr=lr, betas=(0.9, 0.95))
    for step in range(steps):
        ids, mask = ddp_worker.masked_batch(step)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup)
        logits = plain(input_ids=ids).logits[:, :-1]
        targets = ids[:, 1:].masked_fill(~mask[:, 1:], -100)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 7), targets.reshape(-1), ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(plain.parameters(), 1.0)
        optimizer.step()
    assert_close_weights(model.state_dict(), plain.state_dict(), 0)


def test_a_batch_is_shared_in_contiguous_rows_and_never_left_empty():
    ids, mask = ddp_worker.masked_batch(0)
    shares = [_share((ids, mask), index, 3) for index in range(3)]
    assert [len(share[0]) for share in shares] == [3, 2, 2]
    assert torch.equal(torch.cat([share[0] for share in shares]), ids)
    assert torch.equal(torch.cat([share[1] for share in shares]), mask)
    with pytest.raises(LayerprobeError, match="7 sequences cannot be shared by 8 processes"):
        _share(ids, 0, 8)
