"""One training run on 1 process and on 2 (torchrun, data-parallel), measured in one session (not a timed test).

    python bench/bench_train_processes.py                       # cfg world, 4 x 128, 100 steps of 16
    python bench/bench_train_processes.py --steps 40 --batch 64

Each run trains a `train_synthetic.py` configuration (`runs.train_run`) in its own process tree with
one torch thread per process (what torchrun sets): 1 process, then 2 processes under torchrun with the
same global batch (each computes half of every step's rows). Printed: wall and CPU seconds of the
whole tree (start-up of Python, torch and torchrun included), the CPU seconds inside training summed
over the processes, the ratios 2 / 1, and how far the 2-process model and curve are from the 1-process ones.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file

from bench_parallel import timed_run  # wall and CPU seconds of a command's whole process tree (puts the repo on sys.path)
from layerprobe.synthetic.runs import RunConfig, train_run

LAUNCHERS = {"1 process": [sys.executable],
             "2 processes": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]}


def train_one(args: argparse.Namespace) -> None:
    """One process of a run: train, and write the CPU seconds spent in training to OUT/cpu_<rank>.txt."""
    torch.set_num_threads(1)
    config = RunConfig(world=args.world, layers=args.layers, width=args.width, steps=args.steps, batch=args.batch,
                       grammar="small")  # the grammar of the README's measurement (cfg3b strings are 7x longer)
    began = time.process_time()
    train_run(config, args.worker / "run", args.worker, device="cpu", progress=False)
    (args.worker / f"cpu_{os.environ.get('RANK', '0')}.txt").write_text(str(time.process_time() - began))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="cfg", choices=["cfg", "bios"])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # set when the bench starts a run
    args = parser.parse_args()
    if args.worker:
        return train_one(args)
    flags = ["--world", args.world, "--layers", str(args.layers), "--width", str(args.width),
             "--steps", str(args.steps), "--batch", str(args.batch)]
    rows, models, curves = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, launcher in LAUNCHERS.items():
            out = Path(tmp) / name.replace(" ", "-")
            wall, cpu = timed_run(launcher + [__file__, *flags, "--worker", str(out)], dict(os.environ))
            models[name] = load_file(out / "run" / "model" / "model.safetensors")
            curves[name] = pd.read_csv(out / "train_run.csv")
            in_training = sum(float(path.read_text()) for path in out.glob("cpu_*.txt"))
            rows.append({"run": name, "wall_s": wall, "cpu_s": cpu, "training_cpu_s": in_training,
                         "final_loss": curves[name]["loss"].iloc[-1]})
    table = pd.DataFrame(rows).set_index("run")
    print(f"train_synthetic.py {' '.join(flags)} --threads 1   (load average {os.getloadavg()[0]:.1f})")
    print(table.round(4).to_string())
    one, two = (table.loc[name] for name in LAUNCHERS)
    print(f"2 / 1: wall {two.wall_s / one.wall_s:.2f}x, CPU {two.cpu_s / one.cpu_s:.2f}x, "
          f"CPU in training {two.training_cpu_s / one.training_cpu_s:.2f}x")
    first, second = models.values()
    weights = max((first[k] - second[k]).abs().max().item() for k in first)
    loss = (curves["1 process"]["loss"] - curves["2 processes"]["loss"]).abs().max()
    print(f"2 processes vs 1: max |weight difference| {weights:.2e}, max |loss difference| over the curve {loss:.2e}")


if __name__ == "__main__":
    main()
