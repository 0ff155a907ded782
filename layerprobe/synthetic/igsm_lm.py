"""iGSM meets a language model: training batches, greedy solving, graded accuracy.

Training sequences are "<bos> problem question solution : <solution> <eos>"; the loss is taken on the
solution and <eos> only (the problem text is random names and numbers, nothing to learn there),
which is the paper's setting of training the model to write solutions. A model solves a problem by
greedy decoding after "solution :"; `check_solution` grades what it writes.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from layerprobe.results import bootstrap_interval, wilson_interval
from layerprobe.synthetic import igsm
from layerprobe.synthetic.vocab import Vocab


def make_vocab() -> Vocab:
    return Vocab(igsm.vocabulary_tokens())


def training_example(vocab: Vocab, problem: igsm.Problem, rng: random.Random, retry_p: float,
                     mask_mistakes: bool = False, detour_p: float = 0.0,
                     detour_body: bool = False) -> tuple[list[int], list[bool]]:
    """Ids of one training sequence and its loss mask: True on the solution and <eos> (the trained part),
    except on a detour's tokens (its name only, with `detour_body`) and, with `mask_mistakes`, on a retry's
    mistake (`igsm.untrained_mask`)."""
    prompt = vocab.encode(igsm.prompt_tokens(problem), bos=True)
    written = igsm.solution_tokens(problem, rng, retry_p, detour_p)
    masked = igsm.untrained_mask(written, mask_mistakes, detour_body)
    ids = prompt + vocab.encode(written.tokens, eos=True)
    return ids, [False] * len(prompt) + [not m for m in masked] + [True]


def batch_fn(vocab: Vocab, config: igsm.IGSMConfig, batch_size: int, seed: int = 0, retry_p: float = 0.0,
             mask_mistakes: bool = False, warmup_steps: int = 0, warmup_min_ops: int | None = None,
             detour_p: float = 0.0, detour_body: bool = False) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """Step -> (ids [B, T] right-padded, loss mask [B, T] on solution tokens) of training-split problems.

    The first `warmup_steps` steps (the curriculum) draw problems of `warmup_min_ops` (default: the least
    of `config.ops`) to `config.ops[0]` operations, uniformly; 0 adds questions about a constant, pure
    lookups in the text. The rest draw the number of operations uniformly from `config.ops`. A pure
    function of the step, as `train` requires for exact resumes.
    """
    low = config.ops[0] if warmup_min_ops is None else warmup_min_ops
    first = dataclasses.replace(config, ops=(low, config.ops[0]))

    def make(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = random.Random(f"igsm-train/{seed}/{step}")
        level = first if step < warmup_steps else config
        examples = [training_example(vocab, igsm.sample_problem(rng, level, split="train"), rng, retry_p, mask_mistakes,
                                     detour_p, detour_body) for _ in range(batch_size)]
        length = max(len(ids) for ids, _ in examples)
        ids = torch.full((batch_size, length), vocab.pad_id, dtype=torch.long)
        mask = torch.zeros((batch_size, length), dtype=torch.bool)
        for row, (example, trained) in enumerate(examples):
            ids[row, : len(example)] = torch.as_tensor(example)
            mask[row, : len(example)] = torch.as_tensor(trained)
        return ids, mask
    return make


def eval_problems(config: igsm.IGSMConfig, n: int, split: str, seed: int = 0) -> list[igsm.Problem]:
    """n problems of the split, equally many per number of operations (fixed by the seed)."""
    rng = random.Random(f"igsm-eval/{split}/{seed}")
    levels = range(config.ops[0], config.ops[1] + 1)
    out = []
    for i in range(n):
        level = levels[i % len(levels)]
        out.append(igsm.sample_problem(rng, dataclasses.replace(config, ops=(level, level)), split=split))
    return out


@torch.no_grad()
def solve(model: nn.Module, vocab: Vocab, problems: Sequence[igsm.Problem], max_new_tokens: int = 160,
          batch_size: int = 32, progress: bool = True,
          prefixes: Sequence[Sequence[str]] | None = None) -> list[list[str]]:
    """Greedy solutions (tokens after "solution :", up to <eos>), batched with left padding; with `prefixes`,
    each problem's solution begins with its prefix and what is returned is the model's continuation."""
    model.eval()
    device = next(model.parameters()).device
    outputs: list[list[str]] = []
    for start in tqdm(range(0, len(problems), batch_size), desc="solving", disable=not progress):
        prompts = [vocab.encode(igsm.prompt_tokens(p) + (list(prefixes[start + row]) if prefixes else []), bos=True)
                   for row, p in enumerate(problems[start:start + batch_size])]
        length = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), length), vocab.pad_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for row, prompt in enumerate(prompts):
            ids[row, length - len(prompt):] = torch.as_tensor(prompt)
            attention[row, length - len(prompt):] = 1
        generated = model.generate(input_ids=ids.to(device), attention_mask=attention.to(device),
                                   max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=vocab.pad_id,
                                   eos_token_id=vocab.eos_id)
        for row in generated[:, length:].tolist():
            tokens = vocab.decode(row, skip_special=False)
            outputs.append(tokens[: tokens.index(Vocab.EOS)] if Vocab.EOS in tokens else tokens)
    return outputs


def grade(problems: Sequence[igsm.Problem], solutions: Sequence[Sequence[str]], split: str) -> pd.DataFrame:
    """One row per problem: ops, split, correct, shortest (no unnecessary parameter), step_share (share of
    the needed parameters defined validly before the first error: partial progress), retries (before the
    first error), steps and backs (steps written in all, and how many of them ended in [BACK]), error, and
    premature (the first error is a step begun before its operands were all defined)."""
    rows = []
    for problem, written in zip(problems, solutions):
        check = igsm.check_solution(problem, written)
        nece = problem.nece
        steps, backs = igsm.step_counts(written)
        rows.append({"ops": problem.operations, "split": split, "correct": check.correct, "shortest": check.shortest,
                     "step_share": sum(i in nece for i in check.defined) / len(nece),
                     "unnecessary": len(check.unnecessary), "retries": check.retries, "steps": steps, "backs": backs,
                     "error": check.error or "", "premature": check.premature})
    return pd.DataFrame(rows)


def accuracy_rows(graded: pd.DataFrame, model: str, condition: str, n_layers: int, task: str = "igsm-accuracy",
                  **extra: object) -> list[dict]:
    """Schema rows (task igsm-accuracy unless given, layer -1) per ops and overall, language = split.

    subtask "<condition>/ops=<k>" or "<condition>/all". Metrics: accuracy (fully correct solution),
    shortest_share (share of the correct solutions that compute no unnecessary parameter) and
    step_share (mean share of needed steps written validly before the first error), premature_share (share
    of the problems whose first error is a step begun before its operands were defined: the failure of
    tracking which parameters can be computed next) and retry_share (share of all written steps that are
    [BACK]-retries, pooled over the problems; n_items = steps written).
    """
    rows = []
    for split, by_split in graded.groupby("split"):
        for name, frame in by_level(by_split):
            correct = frame[frame["correct"]]
            metrics = (("accuracy", frame["correct"]), ("shortest_share", correct["shortest"]),
                       ("step_share", frame["step_share"]), ("premature_share", frame["premature"]))
            for metric, values in metrics:
                values = values.to_numpy(dtype=float)
                if metric == "step_share":
                    low, high = bootstrap_interval(values)
                else:
                    low, high = wilson_interval(values.sum(), len(values))
                rows.append(_row(model, task, f"{condition}/{name}", split, n_layers, metric,
                                 values.mean() if len(values) else np.nan, len(values), low, high, extra))
            steps, backs = int(frame["steps"].sum()), int(frame["backs"].sum())
            low, high = wilson_interval(backs, steps)
            rows.append(_row(model, task, f"{condition}/{name}", split, n_layers, "retry_share",
                             backs / steps if steps else np.nan, steps, low, high, extra))
    return rows


def detour_grade(model: nn.Module, vocab: Vocab, problems: Sequence[igsm.Problem], split: str, seed: int = 0,
                 progress: bool = True) -> pd.DataFrame:
    """Does the model look the query's operands up, or write them by their place in the solution? Each problem's
    solution is given up to the query's step, once as written ("steps") and once with one correct unneeded
    step added last ("detour", `igsm.detour_prefixes`; problems with no unneeded parameter computable there are
    left out); the model finishes both greedily. One row per problem and context: ops, split, context, correct."""
    rng = random.Random(f"igsm-detour/{seed}/{split}")
    cases = [(problem, pair) for problem in problems if (pair := igsm.detour_prefixes(problem, rng)) is not None]
    rows = []
    for context, which in (("steps", 0), ("detour", 1)):
        prefixes = [pair[which] for _, pair in cases]
        endings = solve(model, vocab, [problem for problem, _ in cases], progress=progress, prefixes=prefixes)
        rows += [{"ops": problem.operations, "split": split, "context": context,
                  "correct": igsm.check_solution(problem, prefix + ending).correct}
                 for (problem, _), prefix, ending in zip(cases, prefixes, endings)]
    return pd.DataFrame(rows, columns=["ops", "split", "context", "correct"])


def detour_rows(graded: pd.DataFrame, model: str, condition: str, n_layers: int, task: str = "igsm-accuracy",
                **extra: object) -> list[dict]:
    """Rows of `detour_grade`'s frame per split, ops and overall: metrics accuracy_after_steps and
    accuracy_after_detour (Wilson intervals), subtasks as `accuracy_rows`'."""
    rows = []
    for (split, context), by_context in graded.groupby(["split", "context"]):
        for name, frame in by_level(by_context):
            hits, n = int(frame["correct"].sum()), len(frame)
            low, high = wilson_interval(hits, n)
            rows.append(_row(model, task, f"{condition}/{name}", split, n_layers, f"accuracy_after_{context}",
                             hits / n, n, low, high, extra))
    return rows


def by_level(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """("ops=<k>", its rows) per number of operations, then ("all", every row): the subtask levels of the CSVs."""
    return [(f"ops={ops}", part) for ops, part in frame.groupby("ops")] + [("all", frame)]


def _row(model: str, task: str, subtask: str, split: str, n_layers: int, metric: str, value: float, n_items: int,
         low: float, high: float, extra: dict) -> dict:
    return {"model": model, "task": task, "subtask": subtask, "language": split, "method": "generation", "layer": -1,
            "n_layers": n_layers, "metric": metric, "value": value, "n_items": n_items, "ci_low": float(low),
            "ci_high": float(high), **extra}


def token_kinds(problem: igsm.Problem) -> list[tuple[str, set[str] | None]]:
    """Per token of the shortest solution: what predicting it takes, and the set of right answers where more
    than one is right (the next parameter's owner and item: any needed parameter computable now; either
    operand first in a sum or a product, which the checker accepts in any order).

    Kinds: "name" (choosing the next parameter), "constant value k=<k>" (a constant's value, read from a text
    holding k constants, k = 1, 2, 3+: copying *a* number is right 1/k of the time, the keyed lookup always),
    "operation" (the operator, read from the parameter's sentence), "operand letter" (its operands' letters),
    "operand order" (a difference's first operand: which of its two comes first, read from "of ... and"),
    "operand value" and "copy value" (earlier values, by letter), "result" (arithmetic), "format" (the rest).
    """
    constants = sum(param.op == "const" for param in problem.params)
    constant_kind = f"constant value k={constants if constants < 3 else '3+'}"
    kinds: list[tuple[str, set[str] | None]] = []
    defined: set[int] = set()
    for index in problem.solution_order:
        param = problem.params[index]
        ready = [i for i in problem.nece if i not in defined and all(j in defined for j in problem.params[i].operands)]
        owners = {problem.params[i].owner for i in ready}
        items = {problem.params[i].item for i in ready if problem.params[i].owner == param.owner}
        binary = param.op not in ("const", "copy")
        for written in range(len(igsm.step_tokens(problem, index))):
            position = written + 3 if problem.short_steps and written >= 6 else written  # as in a long step
            kind = "format"
            if position in (1, 3):
                kind = "name"
            elif position == 10:
                kind = {"const": constant_kind, "diff": "operand order"}.get(param.op, "operand letter")
            elif position == 11 and binary:
                kind = "operation"
            elif position == 12:
                kind = "copy value" if param.op == "copy" else "operand letter"
            elif binary and position in (14, 16):
                kind = "operand value"
            elif binary and position == 18:
                kind = "result"
            right = owners if position == 1 else items if position == 3 else None
            if position == 10 and param.op in ("sum", "prod"):
                right = {problem.variables[j] for j in param.operands}
            kinds.append((kind, right))
        defined.add(index)
    return kinds


@torch.no_grad()
def token_accuracy(model: nn.Module, vocab: Vocab, problems: Sequence[igsm.Problem]) -> pd.DataFrame:
    """Teacher-forced accuracy of the argmax next token on each problem's shortest solution, by `token_kinds`
    kind: columns kind, correct, n. Shows which skill a model lacks where the greedy accuracy is only 0."""
    model.eval()
    device = next(model.parameters()).device
    counts: dict[str, list[int]] = {}
    for problem in problems:
        prompt = vocab.encode(igsm.prompt_tokens(problem), bos=True)
        solution = igsm.solution_tokens(problem).tokens
        ids = torch.tensor([prompt + vocab.encode(solution)], device=device)
        predicted = vocab.decode(model(input_ids=ids).logits[0, len(prompt) - 1: -1].argmax(-1).tolist(), skip_special=False)
        for (kind, right), guess, truth in zip(token_kinds(problem), predicted, solution):
            tally = counts.setdefault(kind, [0, 0])
            tally[0] += guess in right if right is not None else guess == truth
            tally[1] += 1
    return pd.DataFrame([{"kind": kind, "correct": c, "n": n} for kind, (c, n) in sorted(counts.items())])


def token_rows(frame: pd.DataFrame, model: str, condition: str, n_layers: int, task: str, **extra: object) -> list[dict]:
    """Schema rows of a `token_accuracy` frame: metric token_accuracy, subtask "<condition>/token=<kind>"."""
    return [_row(model, task, f"{condition}/token={row.kind}", "train", n_layers, "token_accuracy", row.correct / row.n,
                 int(row.n), *wilson_interval(row.correct, row.n), extra) for row in frame.itertuples()]
