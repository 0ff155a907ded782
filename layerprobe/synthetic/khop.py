"""k-hop lookup: the multi-hop reasoning-depth task of the Canon-layer ablation (Physics of LMs 4.1).

A document lists the `nodes` edges of a random cycle over nodes drawn from a pool, in random order,
then asks `queries` questions "? x h<k> = y": y is x's k-th successor on the cycle, 1 <= k <= hops.

    <bos> a b , c d , ... ? x h2 = y ? z h1 = w ...

Only the answers y are training targets. One hop already needs two steps inside the model: find the
edge whose first node is x, then read the node after it, which a transformer without Canon does with
a previous-token head feeding an induction head (two layers). A Canon layer mixes the previous token in
for free, and every further hop is one more lookup, which is where the paper finds Canon layers give
shallow models their depth back.

`KHopRun` is one ablation run: `out/runs/<name>/` holds `khop_run.json`, `vocab.json`, the checkpoint
and `model/`; its accuracy per hop goes to `<data>/canon-khop_<name>.csv` (tidy rows, task
`canon-khop`), with the training CPU seconds summed over the `train` calls that ran (an interrupted
call's seconds are not counted).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from layerprobe import parallel
from layerprobe.errors import DataError
from layerprobe.results import ResultsFile, atomic_write_text, wilson_interval
from layerprobe.synthetic.canon import canon_letters
from layerprobe.synthetic.data import step_rng
from layerprobe.synthetic.train import Batch, build_model, load_trained, n_parameters, train
from layerprobe.synthetic.vocab import Vocab

TASK = "canon-khop"
RUN_FILE = "khop_run.json"
CPU_FILE = "train_cpu_seconds.json"
EVAL_SEED = 10**6  # evaluation documents come from steps no training batch uses


@dataclass(frozen=True)
class KHopRun:
    canon: str = ""  # subset of ABCD
    layers: int = 2
    width: int = 64
    heads: int = 4
    nodes: int = 8  # edges per document
    pool: int = 24  # node symbols
    hops: int = 2  # largest k asked
    queries: int = 4  # questions per document
    steps: int = 1500
    batch: int = 32
    lr: float = 3e-3
    seed: int = 0

    def name(self) -> str:
        return (f"khop-n{self.nodes}k{self.hops}-l{self.layers}w{self.width}-canon{self.canon or 'none'}"
                f"-s{self.steps}-seed{self.seed}")

    def vocab(self) -> Vocab:
        return Vocab([f"n{i}" for i in range(self.pool)] + [f"h{k}" for k in range(1, self.hops + 1)]
                     + [",", "?", "="])

    def length(self) -> int:
        return 1 + 3 * self.nodes + 5 * self.queries

    def build(self) -> torch.nn.Module:
        return build_model("llama", len(self.vocab()), self.layers, self.width, self.heads, self.length(),
                           seed=self.seed, canon=self.canon)


def document(run: KHopRun, vocab: Vocab, rng: np.random.Generator) -> tuple[list[int], list[int], list[int]]:
    """Ids of one document, the positions of its answers, and each answer's hop count."""
    cycle = rng.choice(run.pool, size=run.nodes, replace=False)
    successor = {int(a): int(b) for a, b in zip(cycle, np.roll(cycle, -1))}
    tokens = ["<bos>"]
    for a in rng.permutation(cycle):
        tokens += [f"n{a}", f"n{successor[int(a)]}", ","]
    answers, hops = [], []
    for _ in range(run.queries):
        start, k = int(rng.choice(cycle)), int(rng.integers(1, run.hops + 1))
        end = start
        for _ in range(k):
            end = successor[end]
        tokens += ["?", f"n{start}", f"h{k}", "=", f"n{end}"]
        answers.append(len(tokens) - 1)
        hops.append(k)
    return [vocab.ids[t] for t in tokens], answers, hops


def batch(run: KHopRun, vocab: Vocab, step: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids [B, T], answer mask [B, T] and hop counts [B, queries] of step `step`'s documents."""
    rng = step_rng(run.seed, step)
    docs = [document(run, vocab, rng) for _ in range(size)]
    ids = torch.tensor([d[0] for d in docs])
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for row, (_, answers, _) in enumerate(docs):
        mask[row, answers] = True
    return ids, mask, torch.tensor([d[2] for d in docs])


def batch_fn(run: KHopRun, vocab: Vocab):
    def fn(step: int) -> Batch:
        ids, mask, _ = batch(run, vocab, step, run.batch)
        return ids, mask
    return fn


@torch.no_grad()
def accuracy_by_hop(model: torch.nn.Module, run: KHopRun, n_docs: int) -> dict[int, np.ndarray]:
    """Per hop count, whether each held-out answer is the argmax of the model's next-token logits."""
    vocab = run.vocab()
    ids, mask, hops = batch(run, vocab, EVAL_SEED, n_docs)
    device = next(model.parameters()).device
    model.eval()
    logits = model(input_ids=ids.to(device), use_cache=False).logits[:, :-1].cpu()
    correct = (logits.argmax(-1) == ids[:, 1:])[mask[:, 1:]].view(n_docs, run.queries)
    return {k: correct[hops == k].numpy() for k in range(1, run.hops + 1)}


def accuracy_rows(correct: dict[int, np.ndarray], run: KHopRun, **extra: object) -> list[dict]:
    """Tidy rows: subtask "canon=<places>/hops=<k>" and ".../all", metric accuracy, layer -1."""
    condition = f"canon={run.canon or 'none'}"
    groups = [(f"hops={k}", values) for k, values in correct.items()] + [("all", np.concatenate(list(correct.values())))]
    rows = []
    for name, values in groups:
        low, high = wilson_interval(values.sum(), len(values))
        rows.append({"model": run.name(), "task": TASK, "subtask": f"{condition}/{name}", "language": "",
                     "method": "argmax", "layer": -1, "n_layers": run.layers, "metric": "accuracy",
                     "value": float(values.mean()), "n_items": len(values), "ci_low": float(low),
                     "ci_high": float(high), "canon": run.canon or "none", "hops": run.hops, "nodes": run.nodes,
                     **extra})
    return rows


def _cpu_seconds(out: Path) -> float:
    path = out / CPU_FILE
    try:
        return float(json.loads(path.read_text(encoding="utf-8"))["seconds"]) if path.exists() else 0.0
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(path, f"not a CPU-seconds record ({error})") from None


def train_and_grade(run: KHopRun, out_root: Path, data_dir: Path, n_eval: int, device: str = "cpu",
                    progress: bool = True) -> Path:
    """Train (or resume) the run, then write its accuracy rows (once): returns the CSV path."""
    run = dataclasses.replace(run, canon=canon_letters(run.canon))
    out = Path(out_root) / run.name()
    vocab = run.vocab()
    model = run.build().to(device)
    began = time.process_time()
    result = train(model, batch_fn(run, vocab), steps=run.steps, lr=run.lr, out_dir=out,
                   curve_csv=Path(data_dir) / f"train_{run.name()}.csv", desc=run.name(), progress=progress)
    path = Path(data_dir) / f"{TASK}_{run.name()}.csv"
    if not parallel.is_main():
        return path
    seconds = _cpu_seconds(out) + (time.process_time() - began if result.seconds else 0.0)
    atomic_write_text(out / CPU_FILE, json.dumps({"seconds": seconds}))
    vocab.save(out / "vocab.json")
    atomic_write_text(out / RUN_FILE, json.dumps(dataclasses.asdict(run), indent=1))
    results = ResultsFile(path)
    if not results.done(model=run.name(), task=TASK):
        lm = load_trained(out, name=run.name(), device=device)  # graded from disk: the checkpoint the tools read
        rows = accuracy_rows(accuracy_by_hop(lm.model, run, n_eval), run, n_params=n_parameters(lm.model),
                             width=run.width, steps=run.steps, train_cpu_s=round(seconds, 1))
        results.add(rows)
    return path
