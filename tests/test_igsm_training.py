"""iGSM and capacity training data, a tiny run that learns, batched solving, accuracy rows, budgets."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pandas as pd
import pytest
import torch
from single_thread import one_torch_thread  # noqa: F401  (autouse fixture)

from layerprobe.results import read_results
from layerprobe.synthetic import capacity, igsm, igsm_finetune, igsm_lm
from layerprobe.synthetic.igsm_runs import IGSMRun, curve_grader, curve_table, width_for_budget
from layerprobe.synthetic.train import build_model, n_parameters, train

VOCAB = igsm_lm.make_vocab()
CONFIG = igsm.PRESETS["cpu"]


def test_batches_train_on_exactly_the_solution_and_are_pure_functions_of_the_step():
    make = igsm_lm.batch_fn(VOCAB, CONFIG, batch_size=6, seed=3, retry_p=0.5)
    ids, mask = make(5)
    again_ids, again_mask = make(5)
    assert torch.equal(ids, again_ids) and torch.equal(mask, again_mask) and not torch.equal(ids, make(6)[0])
    for row, row_mask in zip(ids.tolist(), mask.tolist()):
        tokens = VOCAB.decode(row, skip_special=False)
        start = tokens.index("solution") + 2
        trained = [t for t, m in zip(tokens, row_mask) if m]
        assert trained == tokens[start: tokens.index(VOCAB.EOS) + 1]
        assert trained[-1] == VOCAB.EOS and "solution" not in trained


def test_mask_mistakes_drops_exactly_the_mistake_tokens_and_the_curriculum_starts_with_one_operation():
    plain = igsm_lm.batch_fn(VOCAB, CONFIG, batch_size=6, seed=4, retry_p=0.5)
    masked = igsm_lm.batch_fn(VOCAB, CONFIG, batch_size=6, seed=4, retry_p=0.5, mask_mistakes=True)
    (ids, mask), (same_ids, masked_mask) = plain(2), masked(2)
    assert torch.equal(ids, same_ids)
    dropped = 0
    for row, full, kept in zip(ids.tolist(), mask.tolist(), masked_mask.tolist()):
        tokens = VOCAB.decode(row, skip_special=False)
        for position, (token, a, b) in enumerate(zip(tokens, full, kept)):
            if a and not b:  # a masked token lies in "define P 's Q as x" just before a [BACK]
                back = tokens.index(igsm.BACK, position)
                assert back - position <= 6 and "." not in tokens[position:back]
                dropped += 1
            else:
                assert a == b
        assert sum(full) - sum(kept) == 6 * tokens.count(igsm.BACK)
    assert dropped > 0
    curriculum = igsm_lm.batch_fn(VOCAB, CONFIG, batch_size=8, seed=4, warmup_steps=3)
    for step, single in ((0, True), (2, True), (3, False)):
        texts = [VOCAB.decode(row) for row in curriculum(step)[0].tolist()]
        # each operation is written twice in the solution: "x = a + b = 3 + 4 = 7"
        operations = [sum(t[t.index("solution"):].count(symbol) for symbol in "+-*") / 2 for t in texts]
        assert (set(operations) == {1}) == single
    lookups = igsm_lm.batch_fn(VOCAB, CONFIG, batch_size=8, seed=4, warmup_steps=3, warmup_min_ops=0)
    for step, easy in ((0, True), (1, True), (3, False)):
        texts = [VOCAB.decode(row) for row in lookups(step)[0].tolist()]
        operations = {sum(t[t.index("solution"):].count(symbol) for symbol in "+-*") / 2 for t in texts}
        assert (operations <= {0, 1}) == easy and (0 in operations) == easy


def test_the_checkpoint_hook_writes_a_learning_curve(tmp_path):
    run = IGSMRun(layers=1, width=16, steps=4, batch=4, curve_every=2)
    model = run.build(len(VOCAB))
    grader = curve_grader(model, run, tmp_path, n_per_ops=2)
    train(model, igsm_lm.batch_fn(VOCAB, CONFIG, 4), steps=4, lr=1e-3, progress=False, checkpoint_every=2,
          on_checkpoint=grader)
    frame = read_results(tmp_path / f"igsm-curve_{run.name()}.csv")
    assert sorted(set(frame["step"])) == [2, 4] and (frame["task"] == "igsm-curve").all()
    assert set(frame[frame["metric"] == "accuracy"]["n_items"]) == {2, 6}  # per ops level, and all 6
    cpu = frame.groupby("step")["train_cpu_s"].max()
    assert 0 <= cpu[2] <= cpu[4]
    tokens = frame[frame["metric"] == "token_accuracy"]
    solution_tokens = sum(len(igsm.solution_tokens(p).tokens) for p in igsm_lm.eval_problems(CONFIG, 6, "train"))
    assert tokens.groupby("step")["n_items"].sum().tolist() == [solution_tokens] * 2  # every solution token, once
    table = curve_table(run, tmp_path)
    assert table["step"].tolist() == [2, 4] and "tf token=name" in table.columns and "acc ops=3" in table.columns


def test_a_tiny_run_lowers_the_loss():
    model = build_model("llama", len(VOCAB), n_layers=2, d_model=32, n_heads=4, max_len=320, seed=0)
    result = train(model, igsm_lm.batch_fn(VOCAB, CONFIG, batch_size=6), steps=20, lr=3e-3, progress=False, log_every=2)
    first, last = result.curve["loss"].iloc[0], result.final_loss
    assert first > 4.5  # about log(len(VOCAB)) = 5 at the start
    assert last < first - 0.7


def test_batched_left_padded_solving_equals_one_at_a_time():
    model = build_model("llama", len(VOCAB), n_layers=2, d_model=32, n_heads=4, max_len=320, seed=1)
    problems = igsm_lm.eval_problems(CONFIG, 5, "test")
    assert sorted(p.operations for p in problems) == [1, 1, 2, 2, 3]
    together = igsm_lm.solve(model, VOCAB, problems, max_new_tokens=12, progress=False)
    alone = [igsm_lm.solve(model, VOCAB, [p], max_new_tokens=12, progress=False)[0] for p in problems]
    assert together == alone and all(len(s) == 12 for s in together)


@pytest.mark.parametrize("preset", ["cpu", "paper"])
def test_detour_grade_tells_a_model_that_looks_operands_up_from_one_that_writes_them_by_place(preset, monkeypatch):
    """Two stand-in solvers finish each given beginning with the query's step: one looks the letters up in
    the beginning (right after both), one writes the step as the shortest solution would: right after the
    solution's own steps; after a detour wrong where letters follow the solution order (cpu: the detour took
    the query's letter), still right where each parameter has its own letter (paper)."""
    config = igsm.PRESETS[preset]
    problems = igsm_lm.eval_problems(config, 30, "train", seed=2)

    def query_step(problem, prefix, looks_up):
        defined = igsm.check_solution(problem, prefix).defined if looks_up else [i for i in problem.solution_order[:-1]]
        steps = igsm.written_steps(problem, defined + [problem.query])
        return steps[len(igsm.written_steps(problem, defined)):]

    for looks_up, expected_after_detour in ((True, 1.0), (False, 0.0 if config.ordered_variables else 1.0)):
        def finish(model, vocab, batch, progress=True, prefixes=None):
            return [query_step(p, list(prefix), looks_up) for p, prefix in zip(batch, prefixes)]
        monkeypatch.setattr(igsm_lm, "solve", finish)
        graded = igsm_lm.detour_grade(None, VOCAB, problems, "train", seed=2, progress=False)
        value = pd.DataFrame(igsm_lm.detour_rows(graded, "m", "retry=0/l4w64", 4)).set_index(["subtask", "metric"])
        assert value.loc[("retry=0/l4w64/all", "accuracy_after_steps"), "value"] == 1.0
        assert value.loc[("retry=0/l4w64/all", "accuracy_after_detour"), "value"] == expected_after_detour
    with_detour = [p for p in problems if any(ok and i not in p.nece for i, ok in
                                               enumerate(p.can_next(set(p.solution_order[:-1]))))]
    assert 0 < len(with_detour) < len(problems)
    assert value.loc[("retry=0/l4w64/all", "accuracy_after_detour"), "n_items"] == len(with_detour)
    for problem in with_detour:  # the detour beginning: the solution's steps but the query's, plus one unneeded
        steps, detour = igsm.detour_prefixes(problem, random.Random(0))
        check = igsm.check_solution(problem, detour)
        assert check.defined[:-1] == problem.solution_order[:-1] and len(check.unnecessary) == 1
        assert check.error == "the queried parameter is never defined" and detour[: len(steps)] == steps


def test_accuracy_rows_by_hand():
    rng = random.Random(0)
    problems = [igsm.sample_problem(rng, dataclasses.replace(CONFIG, ops=(ops, ops))) for ops in (1, 1, 2, 2)]
    while all(i in problems[1].nece or q.operands for i, q in enumerate(problems[1].params)):  # needs a spare constant
        problems[1] = igsm.sample_problem(rng, dataclasses.replace(CONFIG, ops=(1, 1)))
    right = [igsm.solution_tokens(p).tokens for p in problems]
    extra = next(i for i, q in enumerate(problems[1].params) if i not in problems[1].nece and not q.operands)
    query = problems[3].query  # begun first: its operands are not defined yet
    written = [right[0], igsm.step_tokens(problems[1], extra) + right[1], right[2], igsm.step_tokens(problems[3], query)]
    graded = igsm_lm.grade(problems, written, "test")
    rows = pd.DataFrame(igsm_lm.accuracy_rows(graded, "m", "retry=0/l4w64", 4))
    value = rows.set_index(["subtask", "metric"])["value"]
    assert value[("retry=0/l4w64/ops=1", "accuracy")] == 1.0
    assert value[("retry=0/l4w64/ops=1", "shortest_share")] == 0.5  # one of the two computed a spare parameter
    assert value[("retry=0/l4w64/ops=2", "accuracy")] == 0.5
    assert value[("retry=0/l4w64/all", "accuracy")] == 0.75
    assert value[("retry=0/l4w64/ops=2", "step_share")] == 0.5  # one full solution, one with no valid step
    assert value[("retry=0/l4w64/ops=2", "premature_share")] == 0.5  # that one began with the query
    assert value[("retry=0/l4w64/all", "premature_share")] == 0.25
    assert set(rows["language"]) == {"test"} and (rows["layer"] == -1).all()


def test_capacity_batches_show_every_person_once_per_exposure():
    entries = torch.arange(10 * 4).reshape(10, 4)
    make = capacity.batch_fn(entries, batch_size=4, seed=0)
    seen = torch.cat([make(step)[0][:, 0] for step in range(15)])  # 60 rows = 6 exposures of 10 people
    counts = np.bincount((seen // 4).numpy(), minlength=10)
    assert (counts == 6).all()
    first_pass = (seen[:10] // 4).tolist()
    assert sorted(first_pass) == list(range(10)) and first_pass != list(range(10))
    assert not make(0)[1][:, :3].any() and make(0)[1][:, 3:].all()


@pytest.mark.parametrize("layers", [8])
def test_depth_sweep_widths_keep_the_parameter_count(layers):
    base = IGSMRun()
    with torch.device("meta"):
        budget = n_parameters(base.build(len(VOCAB)))
        width = width_for_budget(base, layers, budget, len(VOCAB))
        count = n_parameters(dataclasses.replace(base, layers=layers, width=width).build(len(VOCAB)))
    assert width % (2 * base.heads) == 0
    assert abs(count - budget) / budget < 0.15


class Scripted(torch.nn.Module):
    """A stand-in LM: for each known sequence, one-hot logits of the scripted next tokens after the prompt."""

    def __init__(self, scripts: dict[tuple, list[int]], vocab_size: int):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.scripts, self.vocab_size = scripts, vocab_size

    def forward(self, input_ids: torch.Tensor):
        prompt, predicted = next((len(p), nxt) for p, nxt in self.scripts.items() if tuple(input_ids[0, :len(p)].tolist()) == p)
        logits = torch.zeros(1, input_ids.shape[1], self.vocab_size)
        for offset, token in enumerate(predicted):
            logits[0, prompt - 1 + offset, token] = 1.0
        return type("Output", (), {"logits": logits})()


def test_token_accuracy_tells_a_keyed_lookup_from_copying_a_number_of_the_text():
    """A model that writes the solution but, for a constant, copies the first number of the text: right on
    every text with one constant, right 1/k of the time on average with k, and right on everything else."""
    rng = random.Random(0)
    problems = [igsm.sample_problem(rng, CONFIG, split="train") for _ in range(60)]
    exact, copier = {}, {}
    for problem in problems:
        prompt_tokens = igsm.prompt_tokens(problem)
        prompt = tuple(VOCAB.encode(prompt_tokens, bos=True))
        truth = igsm.solution_tokens(problem).tokens
        first_number = next(t for t in prompt_tokens if t.isdigit())
        copied = [first_number if kind.startswith("constant value") else token
                  for (kind, _), token in zip(igsm_lm.token_kinds(problem), truth)]
        exact[prompt], copier[prompt] = VOCAB.encode(truth), VOCAB.encode(copied)
    perfect = igsm_lm.token_accuracy(Scripted(exact, len(VOCAB)), VOCAB, problems).set_index("kind")
    assert (perfect["correct"] == perfect["n"]).all()
    assert {"name", "constant value k=1", "constant value k=2", "operation", "operand letter", "operand value",
            "result", "copy value", "format"} <= set(perfect.index)
    copying = igsm_lm.token_accuracy(Scripted(copier, len(VOCAB)), VOCAB, problems).set_index("kind")
    share = copying["correct"] / copying["n"]
    assert share["constant value k=1"] == 1.0 and 0.2 < share["constant value k=2"] < 0.9
    assert (share.drop([k for k in share.index if k.startswith("constant value")]) == 1.0).all()


def _swapped_steps(problem: igsm.Problem, first_only: bool) -> list[str]:
    """The shortest solution with each two-operand step's operands the other way round ("y + z = 1 + 2" ->
    "z + y = 2 + 1"), or only its first operand letter replaced by the second (`first_only`)."""
    tokens = []
    for index in problem.solution_order:
        step = igsm.step_tokens(problem, index)
        if len(problem.params[index].operands) == 2:  # "define A 's B as x = y + z = 1 + 2 = 3 ."
            if first_only:
                step[7] = step[9]
            else:
                step[7], step[9], step[11], step[13] = step[9], step[7], step[13], step[11]
        tokens += step
    return tokens


def test_operand_letters_take_either_order_for_sums_and_products_and_the_order_of_a_difference_counts():
    """The checker accepts a sum's or product's operands in either order and a difference's only in its own;
    token accuracy agrees: writing the second operand first is right for "operand letter", wrong for
    "operand order"."""
    problems = [igsm.sample_problem(random.Random(seed), CONFIG, split="train") for seed in range(40)]
    differences = [any(problem.params[i].op == "diff" for i in problem.solution_order) for problem in problems]
    assert 0 < sum(differences) < len(problems)
    for problem, has_difference in zip(problems, differences):
        assert igsm.check_solution(problem, _swapped_steps(problem, first_only=False)).correct == (not has_difference)
    scripts = {tuple(VOCAB.encode(igsm.prompt_tokens(p), bos=True)): VOCAB.encode(_swapped_steps(p, first_only=True))
               for p in problems}
    share = igsm_lm.token_accuracy(Scripted(scripts, len(VOCAB)), VOCAB, problems).set_index("kind")
    share = share["correct"] / share["n"]
    assert share["operand letter"] == 1.0 and share["operand order"] == 0.0 and share["operand value"] == 1.0


def test_runs_of_other_seeds_have_their_own_names_so_a_rerun_does_not_resume_seed_0():
    run = IGSMRun(steps=8000)
    assert run.name() == "igsm-cpu-llama-canonA-l4w128-retry0-s8000-c0.25"
    assert dataclasses.replace(run, seed=1).name() == run.name() + "-seed1"


def test_runs_with_another_learning_rate_batch_or_heads_have_their_own_names():
    """A --lr 2e-3 run used to take the default run's name, so it reloaded that run's model as its own."""
    run = IGSMRun(steps=8000)
    assert dataclasses.replace(run, lr=2e-3).name() == run.name() + "-lr0.002"
    assert dataclasses.replace(run, batch=16, heads=2).name() == run.name() + "-h2-b16"
    full, lora = (igsm_finetune.finetune_spec(run, method, 0.2, steps=400, lr=1e-3, batch=8) for method in ("full", "lora8"))
    assert full.name() == run.name() + "-ftfull-retry0.2-s400"  # the default lr (a third of 1e-3 for full) keeps the name
    assert lora.name() == run.name() + "-ftlora8-retry0.2-s400"
    slower = igsm_finetune.finetune_spec(run, "full", 0.2, steps=400, lr=3e-4, batch=8)
    assert slower.name() == full.name() + "-lr0.0001"


def test_any_needed_parameter_computable_now_is_a_right_name():
    problem = next(p for p in (igsm.sample_problem(random.Random(s), CONFIG) for s in range(200))
                   if sum(not p.params[i].operands for i in p.nece) >= 2)
    kinds = igsm_lm.token_kinds(problem)
    first_owner = kinds[1]
    constants = {problem.params[i].owner for i in problem.nece if not problem.params[i].operands}
    assert first_owner[0] == "name" and first_owner[1] == constants and len(kinds) == len(igsm.solution_tokens(problem).tokens)
