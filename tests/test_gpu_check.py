"""scripts/gpu_check.sh: its verdicts, and its --cpu dry run on the packaged model (slow)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))

from gpu_check import agreement  # noqa: E402

from layerprobe.tasks.base import MCItem  # noqa: E402

ROOT = Path(__file__).parent.parent


def test_agreement_passes_noise_and_fails_flips():
    rng = np.random.default_rng(0)
    items = [MCItem("q", ["a", "b", "c"], [0]) for _ in range(20)]
    reference = [rng.normal(size=(3, 5)) for _ in items]
    noisy = [s + rng.normal(scale=1e-3, size=s.shape) for s in reference]
    assert all(check.ok for check in agreement(items, reference, noisy, "float16"))
    flipped = [s[::-1].copy() if i % 2 else s for i, s in enumerate(reference)]  # half the items reversed
    delta, agree, _ = agreement(items, reference, flipped, "float16")
    assert not delta.ok and not agree.ok


@pytest.mark.slow
def test_cpu_dry_run_passes_on_the_packaged_model():
    out = subprocess.run(["bash", "scripts/gpu_check.sh", "--cpu", "--items", "4"], cwd=ROOT,
                         capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith(("ok", "FAIL"))]
    assert len(rows) == 6 and all(row.startswith("ok") for row in rows)
    assert any("--device auto (cpu)" in row for row in rows)

