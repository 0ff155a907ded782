"""What tests/test_train_processes.py runs under `torchrun --nproc_per_node 2`: the same script and
train() calls as its 1-process side, while recording which process writes below the output folder.

    torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py OUT

OUT/script: `train_synthetic.py` on a tiny bioS world. OUT/whole: train() on `masked_batch`,
uninterrupted. OUT/resumed: the same run interrupted at step 7 (after the checkpoint at step 6) and
resumed by the same processes. OUT/interrupted: interrupted at step 7 and left for a 1-process resume.
OUT/writes_<rank>.json: the paths each process created, opened for writing, renamed or removed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import train_synthetic  # noqa: E402
from layerprobe.synthetic.train import build_model, train  # noqa: E402
from layerprobe.synthetic.vocab import Vocab  # noqa: E402

SCRIPT_ARGS = ["--world", "bios", "--people", "20", "--layers", "1", "--width", "16", "--heads", "2",
               "--steps", "6", "--batch", "6", "--threads", "1"]
RUN = dict(steps=10, lr=3e-3, log_every=1, checkpoint_every=3, progress=False)
INTERRUPT_AT = 7


def masked_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cycles a b c d ... of 25 tokens in 7 rows, with a loss mask that trains a different number of
    targets in each row (so a process's share of the rows is not its share of the targets)."""
    generator = torch.Generator().manual_seed(step)
    start = torch.randint(0, 4, (7, 1), generator=generator)
    ids = torch.cat([torch.full((7, 1), Vocab.bos_id), (start + torch.arange(24)) % 4 + 3], dim=1)
    mask = torch.arange(25) < torch.randint(5, 26, (7, 1), generator=generator)
    return ids, mask


def new_model() -> torch.nn.Module:
    return build_model("llama", 7, 2, 32, 4, 64, seed=1)


def interrupted(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    if step == INTERRUPT_AT:
        raise KeyboardInterrupt
    return masked_batch(step)


def record_writes(root: Path, log: list[str]) -> None:
    """Audit hook: note every path below `root` that this process creates, writes, renames or removes."""
    root = str(root.resolve())

    def below(path: object) -> str | None:
        if isinstance(path, (str, bytes, os.PathLike)):
            full = os.path.abspath(os.fsdecode(path))
            return full if full.startswith(root) else None
        return None

    def hook(event: str, args: tuple) -> None:
        if event == "open" and below(args[0]):
            mode, flags = args[1], args[2]
            if (mode and any(c in mode for c in "wax+")) or (not mode and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)):
                log.append(below(args[0]))
        elif event in ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree") and below(args[0]):
            log.append(below(args[0]))
        elif event == "os.rename" and (below(args[0]) or below(args[1])):
            log.append(below(args[1]) or below(args[0]))

    sys.addaudithook(hook)


def main(out: Path) -> None:
    writes: list[str] = []
    record_writes(out, writes)
    train_synthetic.main(SCRIPT_ARGS + ["--out", str(out / "script"), "--data", str(out / "data")])
    train(new_model(), masked_batch, out_dir=out / "whole", curve_csv=out / "whole.csv", **RUN)
    for name in ("resumed", "interrupted"):
        try:
            train(new_model(), interrupted, out_dir=out / name, curve_csv=out / f"{name}.csv", **RUN)
        except KeyboardInterrupt:
            pass
    train(new_model(), masked_batch, out_dir=out / "resumed", curve_csv=out / "resumed.csv", **RUN)
    rank = os.environ["RANK"]
    record = sorted(set(writes))
    (out / f"writes_{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
