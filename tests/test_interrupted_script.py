"""README: "an interrupted run resumes ... a killed run, started again, skips what is done and ends with the same CSV".

The real script in a subprocess, killed with SIGKILL (no handler runs) right after its first 64-item
score chunk reached the cache, then started again: its CSV must be byte for byte the CSV of a run
that was never interrupted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny import tiny_lm

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--limit", "10", "--method", "both"]  # 9 relations x 10 facts = 90 items: two cache chunks of 64


def start(model: Path, out: Path, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "LAYERPROBE_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "probe_factual.py"), "--model", str(model), *ARGS,
                             "--out", str(out)], env=env, cwd=out.parent, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def published(scores: Path) -> list[Path]:
    """Score chunks in the cache; a ".<name>.*" file is a chunk still being written (or one a kill cut short)."""
    return [path for path in scores.glob("*.npz") if not path.name.startswith(".")]


def finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err


@pytest.mark.slow  # three runs of the script in subprocesses: about 27 s of CPU
def test_sigkilled_study1_script_resumes_to_the_same_csv(tmp_path):
    lm = tiny_lm("llama")
    model = tmp_path / "model"
    lm.model.save_pretrained(model)
    lm.tokenizer.save_pretrained(model)
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    finish(start(model, reference, tmp_path / "cache-a"))

    scores = tmp_path / "cache-b" / "scores"
    process = start(model, resumed, tmp_path / "cache-b")
    deadline = time.monotonic() + 240
    while not published(scores) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL  # killed mid-run, not finished
    [chunk] = published(scores)  # the first chunk of 64 items, and nothing else
    assert not list(resumed.glob("*.csv"))  # no CSV yet: the kill came before the scoring ended
    written = chunk.stat().st_mtime_ns

    finish(start(model, resumed, tmp_path / "cache-b"))
    assert chunk.stat().st_mtime_ns == written  # the rerun read the chunk instead of scoring it again
    assert len(published(scores)) == 2
    [csv] = resumed.glob("*.csv")
    assert csv.read_bytes() == (reference / csv.name).read_bytes()
