"""One training run on 1 process and on 2 (torchrun, data-parallel), measured in one session (not a timed test).

    python bench/bench_train_processes.py                       # cfg world, 2 x 64, 40 steps of 16
    python bench/bench_train_processes.py --steps 200 --width 128 --layers 4

Each run is `train_synthetic.py` in its own process tree with one torch thread per process (what
torchrun sets): 1 process; 2 processes under torchrun with the same global batch (each computes half
of every step's rows). Printed: wall and CPU seconds (all processes of the tree, start-up included),
the ratios 2 / 1, and how far the 2-process model and curve are from the 1-process ones.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent


def timed(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system of the whole process tree) of `command`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="cfg", choices=["cfg", "bios"])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    flags = ["--world", args.world, "--layers", str(args.layers), "--width", str(args.width), "--steps", str(args.steps),
             "--batch", str(args.batch), "--threads", "1", "--device", "cpu"]
    launchers = {"1 process": [sys.executable],
                 "2 processes": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]}
    with tempfile.TemporaryDirectory() as tmp:
        rows, models, curves = [], {}, {}
        for name, launcher in launchers.items():
            out = Path(tmp) / name.replace(" ", "-")
            wall, cpu = timed(launcher + ["train_synthetic.py", *flags, "--out", str(out / "run"), "--data", str(out)])
            models[name] = load_file(out / "run" / "model" / "model.safetensors")
            curves[name] = pd.read_csv(out / "train_run.csv")
            rows.append({"run": name, "wall_s": wall, "cpu_s": cpu, "final_loss": curves[name]["loss"].iloc[-1]})
    table = pd.DataFrame(rows).set_index("run")
    print(f"train_synthetic.py {' '.join(flags)}")
    print(table.round(4).to_string())
    one, two = (table.loc[name] for name in launchers)
    print(f"2 / 1: wall {two.wall_s / one.wall_s:.2f}x, CPU {two.cpu_s / one.cpu_s:.2f}x")
    weights = max((models["1 process"][k] - models["2 processes"][k]).abs().max().item() for k in models["1 process"])
    loss = (curves["1 process"]["loss"] - curves["2 processes"]["loss"]).abs().max()
    print(f"2 processes vs 1: max |weight difference| {weights:.2e}, max |loss difference| over the curve {loss:.2e}")


if __name__ == "__main__":
    main()
