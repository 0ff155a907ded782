"""Decoding iGSM solutions: regret-and-retry fixes a problem greedy gets wrong, beam search is exhaustive
search when wide enough, forward passes are counted exactly, the retry share of written steps."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections.abc import Sequence

import pandas as pd
import torch
from single_thread import one_torch_thread  # noqa: F401  (autouse fixture)

from layerprobe.results import read_results, ResultsFile
from layerprobe.synthetic import igsm, igsm_decode, igsm_lm
from layerprobe.synthetic.train import build_model, wrap

VOCAB = igsm_lm.make_vocab()
CONFIG = igsm.PRESETS["cpu"]
ENDS = {VOCAB.encode(["."])[0], VOCAB.encode([igsm.BACK])[0]}


def scripted(texts: dict[tuple[int, ...], float], prompt_length: int, size: int, eos_id: int) -> igsm_decode.Scorer:
    """A stand-in model that writes one of `texts` (solution ids -> weight): the next-token probability is the
    weight of the texts that go on with that token over the weight of those the prefix agrees with."""
    def score(batch: Sequence[Sequence[int]]) -> torch.Tensor:
        out = torch.full((len(batch), size), -math.inf)
        for row, ids in enumerate(batch):
            written = tuple(ids[prompt_length:])
            mass = torch.zeros(size)
            for text, weight in texts.items():
                if text[: len(written)] == written:
                    mass[text[len(written)] if len(text) > len(written) else eos_id] += weight
            out[row] = torch.log(mass / mass.sum())
        return out
    return score


def blocked_first_step(seed: int = 0) -> tuple[igsm.Problem, list[str], list[str]]:
    """A problem, a step of its solution that cannot be computed first, and the correct solution."""
    rng = random.Random(seed)
    while True:
        problem = igsm.sample_problem(rng, dataclasses.replace(CONFIG, ops=(2, 3)))
        later = [i for i in problem.solution_order if problem.params[i].operands]
        if later:
            return problem, igsm.step_tokens(problem, later[-1]), igsm.solution_tokens(problem).tokens


def graph_probe(problem: igsm.Problem, prompt_length: int) -> igsm_decode.Flagger:
    """A stand-in error probe that knows the graph: the step's parameter is not computable yet."""
    lookup = {(p.owner, p.item): i for i, p in enumerate(problem.params)}

    def flag(ids: Sequence[int]) -> bool:
        tokens = VOCAB.decode(ids[prompt_length:], skip_special=False)
        step = tokens[-(igsm_decode.NAME_END + 1):]
        defined = igsm.check_solution(problem, tokens[: -len(step)]).defined
        return not problem.can_next(set(defined))[lookup[(step[1], step[3])]]
    return flag


def test_regret_and_retry_fixes_a_first_step_that_greedy_and_beam_get_wrong():
    problem, wrong, right = blocked_first_step()
    prompt = VOCAB.encode(igsm.prompt_tokens(problem), bos=True)
    texts = {tuple(VOCAB.encode(wrong + right)): 0.6, tuple(VOCAB.encode(right)): 0.4}
    score = scripted(texts, len(prompt), len(VOCAB), VOCAB.eos_id)
    flag = graph_probe(problem, len(prompt))

    plain = igsm_decode.greedy(score, prompt, VOCAB.eos_id, 200)
    assert VOCAB.decode(plain.ids) == wrong + right and not igsm.check_solution(problem, VOCAB.decode(plain.ids)).correct
    assert plain.passes == len(wrong) + len(right) + 1  # every token and the <eos>
    beam = igsm_decode.beam_search(score, prompt, VOCAB.eos_id, 4, 200)
    assert VOCAB.decode(beam.ids) == wrong + right  # the likelier whole text: beam search cannot help here

    fixed = igsm_decode.regret_and_retry(score, flag, prompt, ENDS, VOCAB.eos_id, 200, budget=20, seed=0)
    check = igsm.check_solution(problem, VOCAB.decode(fixed.ids))
    assert check.correct and check.answer == problem.answer and VOCAB.decode(fixed.ids) == right
    assert fixed.regrets >= 1  # greedy's first step was flagged and thrown away
    # passes: each regretted attempt wrote the wrong step in full, then the right solution and its <eos>
    assert fixed.passes == fixed.regrets * len(wrong) + len(right) + 1
    assert fixed.probe_reads == fixed.regrets + right.count(".")

    never = igsm_decode.regret_and_retry(score, lambda ids: False, prompt, ENDS, VOCAB.eos_id, 200, budget=20)
    assert never.ids == plain.ids and never.passes == plain.passes and never.regrets == 0
    spent = igsm_decode.regret_and_retry(score, flag, prompt, ENDS, VOCAB.eos_id, 200, budget=0)
    assert spent.ids == plain.ids  # no budget: plain greedy


def table_scorer(seed: int, size: int = 4, eos_id: int = 2) -> igsm_decode.Scorer:
    """Next-token distributions drawn at random per prefix (fixed by the seed and the prefix)."""
    def score(batch: Sequence[Sequence[int]]) -> torch.Tensor:
        rows = []
        for ids in batch:
            generator = torch.Generator().manual_seed(hash((seed, tuple(ids))) % 2**31)
            weights = torch.rand(size, generator=generator) ** 3 + 0.01
            rows.append(torch.log(weights / weights.sum()))
        return torch.stack(rows)
    return score


def exhaustive(score: igsm_decode.Scorer, prompt: list[int], eos_id: int, size: int, limit: int) -> tuple[float, list[int]]:
    """Score every sequence of at most `limit` tokens that ends in <eos> and take the likeliest."""
    best = (-math.inf, [])
    for length in range(limit):
        for body in itertools.product([t for t in range(size) if t != eos_id], repeat=length):
            ids, total = list(prompt), 0.0
            for token in list(body) + [eos_id]:
                total += float(score([ids])[0, token])
                ids.append(token)
            best = max(best, (total, list(body)), key=lambda c: c[0])
    return best


def sequence_logprob(score: igsm_decode.Scorer, prompt: list[int], body: list[int], eos_id: int) -> float:
    ids, total = list(prompt), 0.0
    for token in body + [eos_id]:
        total += float(score([ids])[0, token])
        ids.append(token)
    return total


def test_beam_search_wide_enough_is_exhaustive_search():
    differs = 0
    for seed in range(12):
        score = table_scorer(seed)
        best_total, best = exhaustive(score, [1], 2, 4, 3)
        beam = igsm_decode.beam_search(score, [1], 2, width=9, max_new_tokens=3)  # 3 tokens x 3 = every live prefix
        assert beam.ids == best
        assert math.isclose(sequence_logprob(score, [1], beam.ids, 2), best_total)
        greedy = igsm_decode.greedy(score, [1], 2, 3)
        differs += greedy.ids != best
    assert differs > 0  # the distributions are not all greedy-solvable, so the comparison has teeth


def test_beam_search_finds_a_best_answer_behind_a_likelier_prefix_when_wide_enough():
    """Hand-built (a = 0, b = 1, <eos> = 2): "a b <eos>" (0.55 x 0.44 x 0.98 = 0.237) is the best answer, but "a b"
    (0.242) ranks third among the two-token prefixes behind "b b" (0.387) and "a a" (0.2475): two beams lose it."""
    table = {(): [0.55, 0.43, 0.02], (0,): [0.45, 0.44, 0.11], (1,): [0.05, 0.9, 0.05], (0, 1): [0.01, 0.01, 0.98],
             (0, 0): [0.45, 0.45, 0.1], (1, 1): [0.45, 0.45, 0.1], (1, 0): [0.45, 0.45, 0.1]}

    def score(batch: Sequence[Sequence[int]]) -> torch.Tensor:
        return torch.log(torch.tensor([table[tuple(ids[1:])] for ids in batch]))

    total, best = exhaustive(score, [7], 2, 3, 3)
    assert best == [0, 1] and math.isclose(total, math.log(0.55 * 0.44 * 0.98), rel_tol=1e-6)
    for width, found in ((1, [0]), (2, [0]), (3, best), (4, best)):  # narrow beams end with "a <eos>" (0.0605)
        assert igsm_decode.beam_search(score, [7], 2, width, 3).ids == found, width


def test_forward_passes_are_counted_exactly_on_a_hand_countable_case():
    # every prefix: a 0.5, b 0.4, <eos> 0.1 (ids 0, 1, 2)
    def score(batch: Sequence[Sequence[int]]) -> torch.Tensor:
        return torch.log(torch.tensor([[0.5, 0.4, 0.1]] * len(batch)))
    # live beams: [] -> {a, b} -> {aa, ab} : 1 + 2 + 2 passes; the empty answer (0.1) beats every other finished one
    beam = igsm_decode.beam_search(score, [9], 2, width=2, max_new_tokens=3)
    assert beam.passes == 5 and beam.ids == []
    wide = igsm_decode.beam_search(score, [9], 2, width=3, max_new_tokens=3)
    assert wide.passes == 1 + 2 + 3
    assert igsm_decode.greedy(score, [9], 2, 3).passes == 3  # a a a, no <eos> within the limit


def test_retry_share_of_hand_made_solutions():
    rng = random.Random(1)
    problems = [igsm.sample_problem(rng, dataclasses.replace(CONFIG, ops=(2, 2))) for _ in range(2)]
    first = igsm.solution_tokens(problems[0]).tokens
    later = problems[0].solution_order[-1]
    mistake = ["define"] + problems[0].params[later].tokens + ["as", problems[0].variables[later], igsm.BACK]
    written = [mistake + mistake + first, igsm.solution_tokens(problems[1]).tokens]
    assert igsm.step_counts(written[0]) == (first.count(".") + 2, 2)
    graded = igsm_lm.grade(problems, written, "test")
    rows = pd.DataFrame(igsm_lm.accuracy_rows(graded, "m", "retry=0", 2)).set_index(["subtask", "metric"])
    steps = first.count(".") + 2 + written[1].count(".")
    assert rows.loc[("retry=0/all", "retry_share"), "value"] == 2 / steps
    assert rows.loc[("retry=0/all", "retry_share"), "n_items"] == steps
    assert rows.loc[("retry=0/all", "accuracy"), "value"] == 1.0  # the retries were undone: both correct


def test_decode_report_writes_every_method_on_the_same_problems_and_resumes(tmp_path):
    model = build_model("llama", len(VOCAB), n_layers=1, d_model=16, n_heads=2, max_len=320, seed=0)
    lm = wrap(model, VOCAB, "tiny-igsm")
    options = igsm_decode.DecodeOptions(beam=2, budget=1, max_new_tokens=6)
    results = ResultsFile(tmp_path / "decode.csv")
    igsm_decode.decode_report(lm, CONFIG, results, 1, 3, options, n_probe=8, probe_epochs=1, progress=False)
    frame = read_results(tmp_path / "decode.csv")
    assert set(frame["method"]) == {"greedy", "beam2", "regret-retry1", "vprobe-rank0"}
    passes = frame[(frame["metric"] == "forward_passes") & frame["subtask"].str.endswith("/all")]
    by_method = passes.set_index(["method", "language"])["value"]
    assert (by_method.loc["greedy"] == 6).all()  # an untrained model never writes <eos>: the limit
    assert by_method.loc["beam2"].between(1, 2 * 6).all()  # at most 2 live beams per token
    assert set(frame[frame["metric"] == "accuracy"]["n_items"]) == {1, 3}  # 3 per split, one per ops level
    before = frame.copy()
    igsm_decode.decode_report(lm, CONFIG, ResultsFile(tmp_path / "decode.csv"), 1, 3, options, n_probe=8,
                              probe_epochs=1, progress=False)
    assert read_results(tmp_path / "decode.csv").equals(before)
