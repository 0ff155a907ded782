"""V-probing (Physics of Language Models, part 2.1): what a frozen iGSM model knows about each parameter.

A V-probe appends a query to the text ("[PROBE] A 's B"), lets the frozen model read it with a
rank-8 update of the input embedding matrix (so the model can tell a query from a problem, and
the never-trained [PROBE] token gets a meaning), and fits a linear head on the hidden state of the
query's last token. Here one shared rank-8 update and one head per layer are trained together
(loss averaged over layers), so a single training gives the per-layer picture. Layer L is the
transformers `hidden_states[-1]`, i.e. after the final norm (a per-vector rescaling, immaterial to
a linear head).

Labels, all balanced 50/50 so chance is 0.5 (one positive and one negative example per problem):
- nece: after the question, is parameter A needed for the answer?
- can_next: after k solution steps, can A be computed next?
- dep: after the question, is B a direct operand of A? (query "[PROBE] A 's B , C 's D")
- error (retry data): at the end of a written step's parameter name ("define A 's B"), is this step a
  mistake that [BACK] will undo? Read before the step's variable letter: with letters in solution order
  (the cpu preset) a premature step's letter would give the answer away.
The same probe on a randomly initialised model of the same shape is the baseline that shows the
knowledge is learned rather than read off the query tokens.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from layerprobe.models import LoadedModel
from layerprobe.results import ResultsFile, layer_rows
from layerprobe.synthetic import igsm
from layerprobe.synthetic.vocab import Vocab

LABELS = ("nece", "can_next", "dep", "error")


@dataclass
class Example:
    ids: list[int]  # read at the last token
    label: int
    problem: int = -1  # index of its problem in the list it was made from


def _pair(rng: random.Random, positives: Sequence, negatives: Sequence) -> list[tuple[object, int]]:
    """One positive and one negative, or nothing when either side is empty (keeps classes balanced)."""
    if not positives or not negatives:
        return []
    return [(rng.choice(list(positives)), 1), (rng.choice(list(negatives)), 0)]


def examples(vocab: Vocab, problems: Sequence[igsm.Problem], label: str, seed: int = 0) -> list[Example]:
    """Balanced probe examples of one label, two per problem (problems where both classes exist)."""
    rng = random.Random(f"vprobe/{label}/{seed}")
    out = []
    for number, problem in enumerate(problems):
        prompt = igsm.prompt_tokens(problem)
        params = range(len(problem.params))
        if label == "nece":
            nece = problem.nece
            for index, value in _pair(rng, [i for i in params if i in nece], [i for i in params if i not in nece]):
                out.append(Example(vocab.encode(prompt + [igsm.PROBE] + problem.params[index].tokens, bos=True), value, number))
        elif label == "can_next":
            order = problem.solution_order
            done = rng.randrange(len(order))
            defined = set(order[:done])
            prefix = [t for i in order[:done] for t in igsm.step_tokens(problem, i)]
            flags = problem.can_next(defined)
            pairs = _pair(rng, [i for i in params if flags[i]], [i for i in params if not flags[i] and i not in defined])
            for index, value in pairs:
                tokens = prompt + prefix + [igsm.PROBE] + problem.params[index].tokens
                out.append(Example(vocab.encode(tokens, bos=True), value, number))
        elif label == "dep":
            owners = [a for a in params if problem.params[a].operands]
            a = rng.choice(owners)
            others = [b for b in params if b != a and not problem.dep(a, b)]
            for b, value in _pair(rng, list(problem.params[a].operands), others):
                tokens = prompt + [igsm.PROBE] + problem.params[a].tokens + [","] + problem.params[b].tokens
                out.append(Example(vocab.encode(tokens, bos=True), value, number))
        elif label == "error":
            written = igsm.solution_tokens(problem, rng, retry_p=0.5)
            starts = [0] + [end + 1 for end in written.step_ends[:-1]]
            wrong = [s for s, bad in zip(starts, written.mistakes) if bad]
            right = [s for s, bad in zip(starts, written.mistakes) if not bad]
            for start, value in _pair(rng, wrong, right):
                # up to the step's parameter name, before its letter: "define A 's B"
                out.append(Example(vocab.encode(prompt + written.tokens[: start + 4], bos=True), value, number))
        else:
            raise ValueError(f"unknown label {label!r} (one of {LABELS})")
    return out


class VProbe(nn.Module):
    """Frozen causal LM + rank-r update of its input embeddings + a linear head per layer. Rank 0 is a plain
    linear probe of the model's own states (what a decoder can read for free while it writes)."""

    def __init__(self, model: nn.Module, n_classes: int = 2, rank: int = 8, seed: int = 0):
        super().__init__()
        self.model = model.requires_grad_(False).eval()
        embedding = model.get_input_embeddings().weight
        n_layers = model.config.num_hidden_layers
        generator = torch.Generator().manual_seed(seed)
        self.left = nn.Parameter(torch.zeros(embedding.shape[0], rank))  # zero: starts as the plain model
        self.right = nn.Parameter(torch.randn(rank, embedding.shape[1], generator=generator) * 0.02)
        self.head_weight = nn.Parameter(torch.zeros(n_layers + 1, embedding.shape[1], n_classes))
        self.head_bias = nn.Parameter(torch.zeros(n_layers + 1, n_classes))

    def forward(self, ids: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """Logits [L+1, B, C] at each row's position `last` (right-padded ids [B, T])."""
        embeds = self.model.get_input_embeddings()(ids)
        if self.left.shape[1]:
            embeds = embeds + self.left[ids] @ self.right
        states = self.model(inputs_embeds=embeds, output_hidden_states=True).hidden_states
        rows = torch.arange(len(ids))
        at_last = torch.stack([state[rows, last] for state in states])  # [L+1, B, d]
        return torch.einsum("lbd,ldc->lbc", at_last, self.head_weight) + self.head_bias[:, None]


def _batch(items: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    length = max(len(e.ids) for e in items)
    ids = torch.full((len(items), length), Vocab.pad_id, dtype=torch.long)
    for row, example in enumerate(items):
        ids[row, : len(example.ids)] = torch.as_tensor(example.ids)
    last = torch.tensor([len(e.ids) - 1 for e in items])
    return ids, last, torch.tensor([e.label for e in items])


def fit_probe(model: nn.Module, train: Sequence[Example], epochs: int = 6, batch_size: int = 32, lr: float = 3e-3,
              seed: int = 0, rank: int = 8) -> VProbe:
    """A V-probe (rank-`rank` embedding update and a head per layer) trained on `train`."""
    probe = VProbe(model, rank=rank, seed=seed)
    optimizer = torch.optim.Adam([p for p in probe.parameters() if p.requires_grad], lr=lr)
    order = random.Random(seed)
    items = list(train)
    for _ in range(epochs):
        order.shuffle(items)
        for start in range(0, len(items), batch_size):
            ids, last, labels = _batch(items[start:start + batch_size])
            logits = probe(ids, last)
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.repeat(logits.shape[0]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return probe.eval()


@torch.no_grad()
def score(probe: VProbe, test: Sequence[Example], batch_size: int = 32) -> np.ndarray:
    """Per-layer 0/1 correctness of a fitted probe on `test` [L+1, n_test]."""
    hits = []
    for start in range(0, len(test), batch_size):
        ids, last, labels = _batch(test[start:start + batch_size])
        hits.append((probe(ids, last).argmax(-1) == labels).float())
    return torch.cat(hits, dim=1).numpy()


def fit_and_score(model: nn.Module, train: Sequence[Example], test: Sequence[Example], epochs: int = 6,
                  batch_size: int = 32, lr: float = 3e-3, seed: int = 0) -> np.ndarray:
    """Train a V-probe on `train`; per-layer 0/1 correctness on `test` [L+1, n_test]."""
    return score(fit_probe(model, train, epochs, batch_size, lr, seed), test, batch_size)


def random_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """An untrained model of the same architecture and shape (the probe baseline)."""
    torch.manual_seed(seed)
    return type(model)(model.config).eval()


def probe_problems(config: igsm.IGSMConfig, n: int, split: str, seed: int = 0) -> list[igsm.Problem]:
    """Problems for fitting (train-split templates) or scoring (held-out test templates) the probes."""
    rng = random.Random(f"vprobe-problems/{split}/{seed}")
    return [igsm.sample_problem(rng, config, split=split) for _ in range(n)]


def vprobe_report(lm: LoadedModel, config: igsm.IGSMConfig, results: ResultsFile, labels: Sequence[str] = LABELS,
                  n_train: int = 120, n_test: int = 60, epochs: int = 4, seed: int = 0, progress: bool = True) -> None:
    """Per-layer V-probe accuracy of every label on the trained model and on a random twin (resumable).

    Rows: task igsm, subtask = label, method vprobe-trained | vprobe-random, metric accuracy (chance 0.5).
    Probes are fitted on problems of training templates and scored on problems of held-out templates.
    """
    fit_on, score_on = probe_problems(config, n_train, "train", seed), probe_problems(config, n_test, "test", seed)
    twins = (("vprobe-trained", lm.model), ("vprobe-random", random_like(lm.model, seed)))
    units = [(method, model, label) for method, model in twins for label in labels]
    for method, model, label in tqdm(units, desc=f"{lm.name} V-probes", disable=not progress):
        if results.done(model=lm.name, task="igsm", subtask=label, method=method):
            continue
        hits = fit_and_score(model, examples(lm.tokenizer, fit_on, label, seed),
                             examples(lm.tokenizer, score_on, label, seed + 1), epochs=epochs, seed=seed)
        results.add(layer_rows(hits, metric="accuracy", model=lm.name, task="igsm", method=method, subtask=label))
