"""One process against two (torchrun) on the same run: wall time, CPU time, and whether the CSVs are identical.

    python bench/bench_parallel.py                       # probe_factual.py --limit 8 and a trace_layers.py run
    python bench/bench_parallel.py --only probe_factual.py

For each script, in one session and each run with a fresh score cache (the converted model is shared):
  1 process, default threads      python SCRIPT ...
  1 process, 1 thread             OMP_NUM_THREADS=1 python SCRIPT ...
  2 processes, 1 thread each      torchrun --standalone --nproc_per_node 2 SCRIPT ...   (torchrun sets 1 thread)
CPU time is user + system of every process of the run (launcher included). The load average is printed
before and after: on a shared machine wall times are noisy, the CPU-time ratio much less so.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from layerprobe.models import model_location  # noqa: E402

WORKLOADS = {
    "probe_factual.py": ["--limit", "8"],
    "trace_layers.py": ["--lens", "logit", "--analysis", "facts,frequency", "--limit", "40"],
}
SETUPS = {
    "1 process, default threads": ([sys.executable], {}),
    "1 process, 1 thread": ([sys.executable], {"OMP_NUM_THREADS": "1"}),
    "2 processes (torchrun)": (["torchrun", "--standalone", "--nproc_per_node", "2"], {}),
}


def timed_run(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of `command` and all its processes."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=list(WORKLOADS), help="bench one script")
    args = parser.parse_args()
    models = Path(model_location("smollm2-135m")).parent  # convert before timing anything
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as scratch:
        for script, script_args in WORKLOADS.items():
            if args.only and script != args.only:
                continue
            measured: dict[str, tuple[float, float, bytes]] = {}
            for number, (setup, (launcher, extra_env)) in enumerate(SETUPS.items()):
                run_dir = Path(scratch) / f"{script}-{number}"
                (run_dir / "cache").mkdir(parents=True)
                (run_dir / "cache" / "models").symlink_to(models)
                env = dict(os.environ, LAYERPROBE_CACHE=str(run_dir / "cache"), **extra_env)
                wall, cpu = timed_run(launcher + [script, *script_args, "--out", str(run_dir / "out")], env)
                [csv] = (run_dir / "out").glob("*.csv")
                measured[setup] = (wall, cpu, csv.read_bytes())
            print(f"\n{script} {' '.join(script_args)}   (load average now {os.getloadavg()[0]:.1f})")
            print(f"{'':30s} {'wall s':>8s} {'CPU s':>8s} {'wall / 1p1t':>12s} {'CPU / 1p1t':>11s}  CSV = 1p1t")
            base_wall, base_cpu, base_csv = measured["1 process, 1 thread"]
            for setup, (wall, cpu, csv) in measured.items():
                print(f"{setup:30s} {wall:8.1f} {cpu:8.1f} {wall / base_wall:12.2f} {cpu / base_cpu:11.2f}  "
                      f"{'identical' if csv == base_csv else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
