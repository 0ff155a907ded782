"""Decoding iGSM solutions (Physics of Language Models, part 2.2): greedy, beam search, regret-and-retry.

Regret-and-retry takes a model trained on error-free data and a V-probe `error` head fitted on that
model's hidden states over retry data (is the step being written a mistake that [BACK] would undo?).
The solution is written step by step ("." ends a step); after each step the probe reads the state at
the step's variable token ("define A 's B as x", where the probe was trained); when it says the step
is wrong, the step is thrown away and written again by temperature sampling, up to a retry budget.

Each method counts its forward passes as tokens decoded: one per token of one sequence, discarded
steps included, and beams x tokens for beam search. The decoder re-reads the whole prefix at each
token (no key-value cache; simple and exact, and the count is that of a cached decoder). The probe is
rank 0 here, a linear head on the very hidden state the decoder computed at the variable token, so it
costs no forward pass of its own (`probe_reads` counts its uses).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from layerprobe.models import LoadedModel
from layerprobe.results import ResultsFile, bootstrap_interval, wilson_interval
from layerprobe.synthetic import igsm, igsm_lm, vprobe
from layerprobe.synthetic.vocab import Vocab

Scorer = Callable[[Sequence[Sequence[int]]], torch.Tensor]
"""Id sequences -> next-token log-probabilities [B, V] after each."""
Flagger = Callable[[Sequence[int]], bool]
"""Ids up to and including the end of a written step's parameter name -> is the step a mistake?"""

NAME_END = 3  # "define A 's B": the step's parameter name ends at its 4th token, where the error probe reads


@dataclass
class Decoded:
    ids: list[int]  # the solution after the prompt, without <eos>
    passes: int  # forward passes: one per token decoded per sequence, discarded ones included
    regrets: int = 0  # steps the probe flagged and that were written again
    probe_reads: int = 0  # steps the probe judged


def model_scorer(model: nn.Module) -> Scorer:
    """A causal LM as a Scorer (left-padded batch, log-softmax of the last position)."""
    device = next(model.parameters()).device

    @torch.no_grad()
    def score(batch: Sequence[Sequence[int]]) -> torch.Tensor:
        length = max(len(ids) for ids in batch)
        ids = torch.full((len(batch), length), Vocab.pad_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for row, seq in enumerate(batch):
            ids[row, length - len(seq):] = torch.as_tensor(list(seq))
            attention[row, length - len(seq):] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids.to(device), attention_mask=attention.to(device),
                       position_ids=positions.to(device)).logits[:, -1]
        return torch.log_softmax(logits.float(), dim=-1).cpu()
    return score


def greedy(score: Scorer, prompt: Sequence[int], eos_id: int, max_new_tokens: int) -> Decoded:
    """The most likely next token each time, up to <eos>."""
    ids = list(prompt)
    for passes in range(1, max_new_tokens + 1):
        token = int(score([ids])[0].argmax())
        if token == eos_id:
            return Decoded(ids[len(prompt):], passes)
        ids.append(token)
    return Decoded(ids[len(prompt):], max_new_tokens)


def beam_search(score: Scorer, prompt: Sequence[int], eos_id: int, width: int, max_new_tokens: int) -> Decoded:
    """The sequence ending in <eos> of highest total log-probability among those beam search keeps: at each
    token every live beam is extended by every token, the `width` best unfinished extensions live on.
    Stops when no live beam can beat the best finished one (log-probabilities only fall) or at the limit;
    with nothing finished by then, the best live beam."""
    live: list[tuple[float, list[int]]] = [(0.0, [])]
    finished: list[tuple[float, list[int]]] = []
    passes = 0
    for _ in range(max_new_tokens):
        logprobs = score([list(prompt) + tokens for _, tokens in live])
        passes += len(live)
        candidates = []
        for (total, tokens), row in zip(live, logprobs.tolist()):
            for token, logprob in enumerate(row):
                if logprob == -math.inf:
                    continue
                if token == eos_id:
                    finished.append((total + logprob, tokens))
                else:
                    candidates.append((total + logprob, tokens + [token]))
        live = sorted(candidates, key=lambda c: -c[0])[:width]
        best = max((total for total, _ in finished), default=-math.inf)
        if not live or live[0][0] <= best:
            break
    pool = finished or live
    return Decoded(max(pool, key=lambda c: c[0])[1], passes)


def _write_step(score: Scorer, ids: list[int], ends: set[int], eos_id: int, limit: int,
                temperature: float, rng: torch.Generator | None) -> tuple[list[int], int]:
    """One step after `ids` (greedy without `rng`, else sampled): tokens up to and including an end token
    or <eos> (kept), at most `limit`; and the passes spent (= tokens written)."""
    step: list[int] = []
    while len(step) < limit:
        logprobs = score([ids + step])[0]
        if rng is None:
            token = int(logprobs.argmax())
        else:
            token = int(torch.multinomial(torch.softmax(logprobs / temperature, dim=-1), 1, generator=rng))
        step.append(token)
        if token in ends or token == eos_id:
            break
    return step, len(step)


def regret_and_retry(score: Scorer, flag: Flagger, prompt: Sequence[int], ends: set[int], eos_id: int,
                     max_new_tokens: int, budget: int, temperature: float = 1.0, seed: int = 0) -> Decoded:
    """Greedy step by step; a finished step the probe flags is discarded and sampled again (at `temperature`,
    seeded), at most `budget` times per solution; a step written with the budget spent is kept."""
    rng = torch.Generator().manual_seed(seed)
    solution: list[int] = []
    passes = regrets = reads = 0
    resample = False
    while len(solution) < max_new_tokens:
        prefix = list(prompt) + solution
        step, spent = _write_step(score, prefix, ends, eos_id, max_new_tokens - len(solution), temperature,
                                  rng if resample else None)
        passes += spent
        if step[-1] == eos_id:
            return Decoded(solution + step[:-1], passes, regrets, reads)
        if step[-1] in ends and len(step) > NAME_END and regrets < budget:
            reads += 1
            if flag(prefix + step[: NAME_END + 1]):
                regrets += 1
                resample = True
                continue
        solution += step
        resample = False
    return Decoded(solution, passes, regrets, reads)


def probe_flagger(probe: vprobe.VProbe, layer: int) -> Flagger:
    """A fitted `error` probe at one layer as a Flagger (class 1 = mistake)."""
    @torch.no_grad()
    def flag(ids: Sequence[int]) -> bool:
        batch = torch.as_tensor([list(ids)])
        return bool(probe(batch, torch.tensor([len(ids) - 1]))[layer, 0].argmax() == 1)
    return flag


@dataclass
class ErrorProbe:
    flag: Flagger
    layer: int
    test_accuracy: float  # on examples of held-out-template problems, at `layer`
    n_test: int


def fit_error_probe(lm: LoadedModel, config: igsm.IGSMConfig, n_train: int, n_test: int, epochs: int,
                    seed: int = 0) -> ErrorProbe:
    """A rank-0 `error` V-probe on the model's own states at the end of the step's parameter name, its layer
    chosen on a quarter of the training problems held back, scored on held-out-template problems."""
    def made(problems: list[igsm.Problem], seed: int) -> list[vprobe.Example]:
        return vprobe.examples(lm.tokenizer, problems, "error", seed)

    problems = vprobe.probe_problems(config, n_train, "train", seed)
    cut = max(1, n_train // 4)
    fit, check = made(problems[cut:], seed), made(problems[:cut], seed + 2)
    test = made(vprobe.probe_problems(config, n_test, "test", seed), seed + 1)
    probe = vprobe.fit_probe(lm.model, fit, epochs=epochs, seed=seed, rank=0)
    layer = int(vprobe.score(probe, check).mean(axis=1).argmax())
    return ErrorProbe(probe_flagger(probe, layer), layer, float(vprobe.score(probe, test)[layer].mean()), len(test))


@dataclass(frozen=True)
class DecodeOptions:
    beam: int = 4
    budget: int = 4  # regret-and-retry: resampled steps per solution at most
    temperature: float = 1.0
    max_new_tokens: int = 160

    def methods(self) -> list[str]:
        return ["greedy", f"regret-retry{self.budget}", f"beam{self.beam}"]  # the costliest last


def decode(method: str, score: Scorer, flag: Flagger | None, vocab: Vocab, problem: igsm.Problem,
           options: DecodeOptions, seed: int) -> Decoded:
    """One problem's solution by one of `options.methods()`."""
    prompt = vocab.encode(igsm.prompt_tokens(problem), bos=True)
    if method == "greedy":
        return greedy(score, prompt, vocab.eos_id, options.max_new_tokens)
    if method.startswith("beam"):
        return beam_search(score, prompt, vocab.eos_id, options.beam, options.max_new_tokens)
    ends = {vocab.encode(["."])[0], vocab.encode([igsm.BACK])[0]}
    return regret_and_retry(score, flag, prompt, ends, vocab.eos_id, options.max_new_tokens, options.budget,
                            options.temperature, seed)


def cost_rows(graded: pd.DataFrame, model: str, method: str, n_layers: int, **extra: object) -> list[dict]:
    """forward_passes (mean per problem, bootstrap interval) and, for regret-and-retry, regret_share (share
    of the problems with at least one regretted step), per split and ops and overall."""
    rows = []
    for split, by_split in graded.groupby("split"):
        for name, frame in igsm_lm.by_level(by_split):
            passes = frame["passes"].to_numpy(dtype=float)
            regretted = (frame["regrets"] > 0).to_numpy()
            for metric, value, (low, high) in (
                    ("forward_passes", passes.mean(), bootstrap_interval(passes)),
                    ("regret_share", regretted.mean(), wilson_interval(regretted.sum(), len(regretted)))):
                rows.append({"model": model, "task": "igsm-decode", "subtask": f"{method}/{name}", "language": split,
                             "method": method, "layer": -1, "n_layers": n_layers, "metric": metric, "value": float(value),
                             "n_items": len(frame), "ci_low": float(low), "ci_high": float(high), **extra})
    return rows


def decode_report(lm: LoadedModel, config: igsm.IGSMConfig, results: ResultsFile, n_layers: int, n_eval: int,
                  options: DecodeOptions, n_probe: int = 120, probe_epochs: int = 4, seed: int = 0,
                  progress: bool = True) -> None:
    """Accuracy by operations and forward passes of each method on the same `n_eval` train-template and
    `n_eval` test-template problems (resumable per method). Rows: task igsm-decode, subtask
    "<method>/ops=<k>" or "<method>/all", language = split, method = the decoding method; plus the error
    probe's held-out accuracy (subtask "error-probe", metric probe_accuracy, layer = the layer used)."""
    score = model_scorer(lm.model)
    methods = [m for m in options.methods() if not results.done(model=lm.name, task="igsm-decode", method=m)]
    flag = None
    if any(m.startswith("regret") for m in methods):
        probe = fit_error_probe(lm, config, n_probe, max(8, n_probe // 2), probe_epochs, seed)
        flag = probe.flag
        low, high = wilson_interval(probe.test_accuracy * probe.n_test, probe.n_test)
        results.add([{"model": lm.name, "task": "igsm-decode-probe", "subtask": "error", "language": "test",
                      "method": "vprobe-rank0", "layer": probe.layer, "n_layers": n_layers, "metric": "probe_accuracy",
                      "value": probe.test_accuracy, "n_items": probe.n_test, "ci_low": float(low),
                      "ci_high": float(high)}])
    problems = {split: igsm_lm.eval_problems(config, n_eval, split, seed=seed) for split in ("train", "test")}
    for method in methods:
        graded = []
        for split, chosen in problems.items():
            decoded = [decode(method, score, flag, lm.tokenizer, problem, options, seed=seed * 100_003 + number)
                       for number, problem in enumerate(tqdm(chosen, desc=f"{method} {split}", disable=not progress))]
            frame = igsm_lm.grade(chosen, [lm.tokenizer.decode(d.ids, skip_special=False) for d in decoded], split)
            graded.append(frame.assign(passes=[d.passes for d in decoded], regrets=[d.regrets for d in decoded]))
        graded = pd.concat(graded)
        extra = dict(beam=options.beam, budget=options.budget, temperature=options.temperature)
        rows = igsm_lm.accuracy_rows(graded, lm.name, method, n_layers, task="igsm-decode", **extra)
        rows = [dict(row, method=method) for row in rows]
        results.add(rows + cost_rows(graded, lm.name, method, n_layers, **extra))
