"""The cfg default (the paper's cfg3b), --quick's small grammar, and the learning curve graded at checkpoints."""

import time

import numpy as np
import pytest

import train_synthetic
from layerprobe.results import read_results
from layerprobe.synthetic import runs
from layerprobe.synthetic.cfg import corrupt
from layerprobe.synthetic.data import cfg_batches
from layerprobe.synthetic.evaluate import Generation
from layerprobe.synthetic.runs import RunConfig, default_config, train_run
from layerprobe.synthetic.vocab import Vocab


def test_the_cfg_default_is_cfg3b_and_quick_is_small():
    cfg = train_synthetic.parse(["--world", "cfg"])
    assert (cfg.grammar, cfg.layers, cfg.width, cfg.steps, cfg.batch, cfg.lr) == (
        "cfg3b", *(runs.WORLD_DEFAULTS["cfg"][k] for k in ("layers", "width", "steps", "batch", "lr")))
    assert RunConfig(world="cfg").grammar == "cfg3b" and cfg.curve_samples == runs.CURVE_SAMPLES
    bios = train_synthetic.parse(["--world", "bios"])  # the cfg sizes do not leak into the other world
    assert (bios.batch, bios.lr, bios.people) == (RunConfig(world="bios").batch, RunConfig(world="bios").lr, 400)
    quick = train_synthetic.parse(["--world", "cfg", "--quick"])
    assert (quick.grammar, quick.layers, quick.steps, quick.curve_samples) == ("small", 2, 60, 10)
    mine = train_synthetic.parse(["--world", "cfg", "--quick", "--grammar", "cfg3b", "--steps", "7"])
    assert (mine.grammar, mine.steps, mine.layers) == ("cfg3b", 7, 2)  # explicit flags win over --quick


def test_the_default_training_strings_are_cfg3b_strings():
    config = default_config("cfg")
    grammar, vocab = config.grammar_(), config.vocab()
    batch = cfg_batches(grammar, vocab, 3, seed=0)(0)
    rng = np.random.default_rng(0)
    for row in batch.tolist():
        tokens = [t for t in row if t != Vocab.pad_id]
        assert tokens[0] == Vocab.bos_id and tokens[-1] == Vocab.eos_id
        terminals = [int(t) for t in vocab.decode(tokens[1:-1], skip_special=False)]
        assert len(terminals) >= grammar.length_range()[0] >= 100 and grammar.accepts(terminals)
        broken = corrupt(terminals, grammar.terminals, rng, rate=0.5)
        assert broken != terminals and not grammar.accepts(broken)


def test_the_curve_grades_each_checkpoint_without_counting_grading_as_training(tmp_path, monkeypatch):
    """Fake generations (first `k` of n accepted at step k) make each row checkable by hand; each grading
    burns 0.3 CPU s, which must not show in train_cpu_s."""
    def fake_generation(lm, grammar, vocab, n, cut, seed):
        began = time.process_time()
        while time.process_time() - began < 0.3:
            pass
        step = calls.append(1) or len(calls)
        return Generation(np.arange(n) < step, np.ones(n, bool), np.full(n, 30), [(1,)] * n)

    calls: list[int] = []
    monkeypatch.setattr(runs, "cfg_generation", fake_generation)
    config = RunConfig(world="cfg", grammar="small", layers=1, width=16, heads=2, steps=4, batch=2)
    train_run(config, tmp_path / "run", tmp_path / "data", progress=False, curve_samples=5)
    rows = read_results(tmp_path / "data" / "cfg-curve_run.csv")
    assert list(rows["step"]) == [1, 2, 3, 4] and list(rows["subtask"]) == [f"small/step={k}" for k in (1, 2, 3, 4)]
    assert np.allclose(rows["value"], [0.2, 0.4, 0.6, 0.8]) and (rows["n_items"] == 5).all()
    z = 1.959964  # the 95% Wilson interval of 1/5, by hand
    centre, half = (0.2 + z * z / 10) / (1 + z * z / 5), z * np.sqrt(0.2 * 0.8 / 5 + z * z / 100) / (1 + z * z / 5)
    assert rows["ci_low"].iloc[0] == pytest.approx(centre - half) and rows["ci_high"].iloc[0] == pytest.approx(centre + half)
    cpu = rows["train_cpu_s"].to_numpy()
    assert (np.diff(cpu) >= 0).all() and (np.diff(cpu) < 0.3).all()  # 4 steps of a tiny model: far under a grading
    train_run(config, tmp_path / "run", tmp_path / "data", progress=False, curve_samples=5)
    assert len(calls) == 4  # finished: nothing graded again
