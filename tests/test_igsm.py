"""iGSM generator vs an independent reading of the problem text, the checker, labels, retry data, split."""

from __future__ import annotations

import dataclasses
import random

import pytest

from layerprobe.synthetic import igsm
from layerprobe.synthetic.igsm import BACK, MOD, check_solution, prompt_tokens, sample_problem, solution_tokens


def parse_text(tokens: list[str]) -> tuple[dict, tuple[str, str]]:
    """The problem as the text states it: {(A, B): (op word, [(C, D), ...] or constant)} and the query."""
    text = tokens[: tokens.index("question")]
    query_at = tokens.index("many")
    query = (tokens[query_at + 1], tokens[query_at + 3])
    sentences, current = [], []
    for token in text:
        if token == ".":
            sentences.append(current)
            current = []
        else:
            current.append(token)
    graph = {}
    for sentence in sentences:
        name, rest = (sentence[0], sentence[2]), sentence[4:]
        if len(rest) == 1:
            graph[name] = ("const", int(rest[0]))
        elif len(rest) == 3:
            graph[name] = ("copy", [(rest[0], rest[2])])
        else:
            operands = [t for t in rest[2:] if t not in ("and", ",")]
            graph[name] = (rest[0], [(operands[i], operands[i + 2]) for i in range(0, len(operands), 3)])
    return graph, query


def value_from_text(graph: dict, name: tuple[str, str], modulus: int = MOD) -> int:
    op, arg = graph[name]
    if op == "const":
        assert 0 <= arg < modulus
        return arg
    values = [value_from_text(graph, operand, modulus) for operand in arg]
    if op in ("copy", "sum"):
        return sum(values) % modulus
    if op == "difference":
        return (values[0] - values[1]) % modulus
    product = 1
    for value in values:
        product *= value
    return product % modulus


def ancestors_from_text(graph: dict, name: tuple[str, str]) -> set:
    op, arg = graph[name]
    found = {name}
    if op != "const":
        for operand in arg:
            found |= ancestors_from_text(graph, operand)
    return found


def problems(n: int, seed: int = 0, config: igsm.IGSMConfig = igsm.IGSMConfig()) -> list[igsm.Problem]:
    rng = random.Random(seed)
    return [sample_problem(rng, config) for _ in range(n)]


@pytest.mark.parametrize("config", [igsm.PRESETS["cpu"], igsm.IGSMConfig(depth=(3, 4), width=(3, 4), max_params=12,
                                                                            max_operands=4, ops=(3, 8))])
def test_answers_match_text_evaluation_and_checker(config):
    for problem in problems(40, config=config):
        graph, query = parse_text(prompt_tokens(problem))
        truth = value_from_text(graph, query, config.modulus)
        written = solution_tokens(problem).tokens
        assert written[-2] == str(truth)  # the solution's last number is the answer
        check = check_solution(problem, written)
        assert check.correct and check.shortest and check.answer == truth, check.error
        assert config.ops[0] <= problem.operations <= config.ops[1]
        assert len(graph) == len(problem.params) and all(len(p.operands) <= config.max_operands for p in problem.params)


def test_a_0_operation_problem_is_a_lookup_of_a_constant_or_a_copy_of_one():
    config = dataclasses.replace(igsm.PRESETS["cpu"], ops=(0, 0))
    queried = set()
    for problem in problems(30, seed=2, config=config):
        graph, query = parse_text(prompt_tokens(problem))
        chain = [query]
        while graph[chain[-1]][0] == "copy":
            chain.append(graph[chain[-1]][1][0])
        assert graph[chain[-1]][0] == "const" and problem.operations == 0
        assert check_solution(problem, solution_tokens(problem).tokens).correct
        queried.add(len(chain))
    assert 1 in queried and max(queried) > 1  # constants and copies of them


def test_variables_are_ordered_in_the_cpu_preset_and_random_in_the_paper_preset():
    for problem in problems(20, seed=6, config=igsm.PRESETS["cpu"]):
        letters = [step[5] for step in _step_texts(solution_tokens(problem).tokens)]
        assert letters == list("abcdefghijklmnopqrstuvwxyz"[: len(problem.nece)])
        assert sorted(problem.variables) == sorted(set(problem.variables))  # distinct, also for unneeded ones
    first_letters = {_step_texts(solution_tokens(p).tokens)[0][5] for p in problems(30, seed=6, config=igsm.PRESETS["paper"])}
    assert len(first_letters) > 5


def test_an_item_names_its_parameter_alone_in_the_cpu_preset_not_in_the_paper_preset():
    def items_with_two_owners(config: igsm.IGSMConfig) -> int:
        count = 0
        for problem in problems(60, seed=4, config=config):
            graph, _ = parse_text(prompt_tokens(problem))
            items = [item for _, item in graph]
            count += len(items) - len(set(items))
        return count
    assert items_with_two_owners(igsm.PRESETS["cpu"]) == 0
    assert items_with_two_owners(igsm.PRESETS["paper"]) > 20


def test_cpu_sentences_name_operands_in_solution_order_and_the_written_letters_follow():
    def unordered(config: igsm.IGSMConfig) -> int:
        return sum(list(p.operands) != sorted(p.operands) for problem in problems(60, seed=5, config=config)
                   for p in problem.params)
    assert unordered(igsm.PRESETS["cpu"]) == 0 and unordered(igsm.PRESETS["paper"]) > 20
    for problem in problems(30, seed=5, config=igsm.PRESETS["cpu"]):
        for step in _step_texts(solution_tokens(problem).tokens):
            if len(step) > 9 and step[8] in "+-*":  # "define A 's B as x = y - z = ..."
                assert step[7] < step[9]
        assert check_solution(problem, solution_tokens(problem).tokens).correct


def test_cpu_steps_are_short_paper_steps_long_and_the_checker_reads_both():
    cpu = problems(20, seed=8, config=igsm.PRESETS["cpu"])
    for problem in cpu:
        steps = _step_texts(solution_tokens(problem).tokens)
        assert all(step[4] == "as" and step[6] == "=" and ";" not in step for step in steps)
        longer = [token for step in steps for token in step[:6] + [";", "so", step[5]] + step[6:]]
        assert check_solution(problem, longer).correct  # the same solution written the paper's way
        wrong = [token for step in steps for token in step]
        wrong[wrong.index(".") - 1] = str((int(wrong[wrong.index(".") - 1]) + 1) % 5)  # the first step's value
        assert not check_solution(problem, wrong).correct
    for problem in problems(10, seed=8, config=igsm.PRESETS["paper"]):
        assert all(step[6:9] == [";", "so", step[5]] for step in _step_texts(solution_tokens(problem).tokens))


def test_checker_rejects_wrong_solutions_and_flags_unnecessary_steps():
    problem = next(p for p in problems(50, seed=1)
                   if len(p.nece) >= 2 and any(i not in p.nece and not q.operands for i, q in enumerate(p.params)))
    written = solution_tokens(problem).tokens
    answer_at = len(written) - 2
    wrong = written[:answer_at] + [str((int(written[answer_at]) + 1) % MOD), "."]
    assert not check_solution(problem, wrong).correct
    first_end = written.index(".")
    assert check_solution(problem, written[first_end + 1:]).error.startswith("step 1")  # first step skipped
    extra = next(i for i in range(len(problem.params)) if i not in problem.nece and not problem.params[i].operands)
    padded = igsm.step_tokens(problem, extra) + written
    check = check_solution(problem, padded)
    assert check.correct and check.unnecessary == [extra] and not check.shortest
    assert not check_solution(problem, ["define", "junk", "."]).correct
    assert not check_solution(problem, []).correct


def test_a_step_begun_before_its_operands_are_defined_is_flagged_premature():
    problem = next(p for p in problems(50, seed=2, config=igsm.PRESETS["cpu"]) if p.params[p.query].operands)
    steps = [igsm.step_tokens(problem, i) for i in problem.solution_order]
    assert not check_solution(problem, [t for step in steps for t in step]).premature  # correct
    early = steps[-1] + [t for step in steps[:-1] for t in step]  # the query first: its operands are undefined
    check = check_solution(problem, early)
    assert not check.correct and check.premature and check.error.startswith("step 1")
    answer_at = len(steps[0]) - 2  # the first step with a wrong result: wrong, but not premature
    wrong_value = steps[0][:answer_at] + [str((int(steps[0][answer_at]) + 1) % igsm.PRESETS["cpu"].modulus), "."]
    check = check_solution(problem, wrong_value)
    assert not check.correct and not check.premature


def test_labels_agree_with_graph_and_checker():
    for problem in problems(30, seed=2):
        graph, query = parse_text(prompt_tokens(problem))
        names = [(p.owner, p.item) for p in problem.params]
        assert {names[i] for i in problem.nece} == ancestors_from_text(graph, query)
        for a, name in enumerate(names):
            op, arg = graph[name]
            operands = set() if op == "const" else set(arg)
            assert {names[b] for b in range(len(names)) if problem.dep(a, b)} == operands
        # can_next after each prefix of the solution: exactly the parameters whose step the checker would accept next
        order, prefix = problem.solution_order, []
        for done in range(len(order)):
            labels = problem.can_next(set(order[:done]))
            for i, label in enumerate(labels):
                if i in order[:done]:
                    assert not label
                    continue
                check = check_solution(problem, prefix + igsm.step_tokens(problem, i))
                accepted = check.correct or check.error == "the queried parameter is never defined"
                assert accepted == label, (done, i, check.error)
            prefix += igsm.step_tokens(problem, order[done])


def replay(problem: igsm.Problem, tokens: list[str]) -> tuple[list[tuple[int, str]], list[int]]:
    """Replay a written solution token by token, independently of the generator: the abandoned steps as
    (parameter, variable) and the parameters of the kept steps, in order."""
    lookup = {(p.owner, p.item): i for i, p in enumerate(problem.params)}
    abandoned, kept, current = [], [], []
    for token in tokens:
        current.append(token)
        if token == BACK:
            assert current[0] == "define" and current[4] == "as" and len(current) == 7, current
            abandoned.append((lookup[(current[1], current[3])], current[5]))
            current = []
        elif token == ".":
            kept.append(lookup[(current[1], current[3])])
            current = []
    assert not current
    return abandoned, kept


def test_retry_data_is_a_later_step_begun_too_early_then_a_correct_solution():
    rng = random.Random(3)
    total_retries = 0
    for problem in problems(60, seed=3):
        written = solution_tokens(problem, rng, retry_p=0.5)
        abandoned, kept = replay(problem, written.tokens)
        assert kept == problem.solution_order  # without the retries: the error-free shortest solution
        clean = [t for step in kept for t in igsm.step_tokens(problem, step)]
        kept_tokens = []
        for token in written.tokens:  # drop every "... [BACK]" span: exactly the clean solution remains
            kept_tokens.append(token)
            if token == BACK:
                del kept_tokens[-7:]
        assert kept_tokens == clean
        check = check_solution(problem, written.tokens)
        assert check.correct and check.shortest and check.answer == problem.answer
        assert check.retries == len(abandoned) == sum(written.mistakes) == written.tokens.count(BACK)
        # each abandoned step: a later step of the solution, with its own variable, whose operands were not all
        # computed when it was begun (replayed: the kept steps before it)
        steps, kept_so_far = _step_texts(written.tokens), 0
        for text in steps:
            if text[-1] == BACK:
                index = next(i for i, p in enumerate(problem.params) if (p.owner, p.item) == (text[1], text[3]))
                done = set(kept[:kept_so_far])
                assert index in kept[kept_so_far + 1:]
                assert text[5] == problem.variables[index]
                assert not all(j in done for j in problem.params[index].operands)
            else:
                kept_so_far += 1
        total_retries += check.retries
    assert total_retries > 20
    assert BACK not in solution_tokens(problems(1)[0], rng, retry_p=0.0).tokens


def _step_texts(tokens: list[str]) -> list[list[str]]:
    steps, current = [], []
    for token in tokens:
        current.append(token)
        if token in (".", BACK):
            steps.append(current)
            current = []
    return steps


def test_mistake_mask_covers_exactly_the_abandoned_steps_but_their_back():
    rng = random.Random(8)
    for problem in problems(20, seed=8):
        written = solution_tokens(problem, rng, retry_p=0.5)
        assert igsm.untrained_mask(written) == [False] * len(written.tokens)  # mistakes are trained by default
        mask = igsm.untrained_mask(written, mask_mistakes=True)
        expected = []
        for text in _step_texts(written.tokens):
            expected += [True] * (len(text) - 1) + [False] if text[-1] == BACK else [False] * len(text)
        assert mask == expected


@pytest.mark.parametrize("preset", ["cpu", "paper"])
def test_detours_are_valid_unneeded_steps_in_context_only(preset):
    """A detour is the correct step of a parameter the answer does not need, computable when written (the
    checker replays it), lettered in written order under the cpu preset; its tokens carry no loss (with
    detour_body, its parameter's name only)."""
    config = igsm.PRESETS[preset]
    rng, total = random.Random(11), 0
    for problem in problems(60, seed=11, config=config):
        written = solution_tokens(problem, rng, retry_p=0.3 if preset == "paper" else 0.0, detour_p=0.5)
        check = check_solution(problem, written.tokens)
        assert check.correct and check.answer == problem.answer
        abandoned, kept = replay(problem, written.tokens)
        detoured = [i for i in kept if i not in problem.nece]
        assert check.unnecessary == detoured and sum(written.detours) == len(detoured)
        assert [i for i in kept if i in problem.nece] == problem.solution_order
        steps = [text for text in _step_texts(written.tokens) if text[-1] != BACK]
        if config.ordered_variables:
            assert [text[5] for text in steps] == list(igsm.VARIABLES[: len(steps)])
        mask, expected, body_expected = igsm.untrained_mask(written), [], []
        for text, detour in zip(_step_texts(written.tokens), written.detours):
            expected += [detour] * (len(text) - 1) + [False]
            name = text.index("as") - 1 if text[-1] != BACK else 0  # "define A 's B as": 3 name tokens
            body_expected += [False] + [detour] * name + [False] * (len(text) - 1 - name)
        assert mask == expected
        assert igsm.untrained_mask(written, detour_body=True) == body_expected  # only the detour's name untrained
        total += len(detoured)
    assert total > 20
    plain = problems(5, seed=12, config=config)
    assert [solution_tokens(p, random.Random(0), detour_p=0.0).tokens for p in plain] == \
           [solution_tokens(p).tokens for p in plain]


def test_split_holds_out_whole_templates_and_is_deterministic():
    rng = random.Random(4)
    train = {sample_problem(rng, split="train").template() for _ in range(100)}
    test = {sample_problem(rng, split="test").template() for _ in range(40)}
    assert train and test and not train & test
    a, b = problems(5, seed=9), problems(5, seed=9)
    assert [prompt_tokens(p) for p in a] == [prompt_tokens(p) for p in b]


def test_every_token_is_in_the_vocabulary():
    vocabulary = set(igsm.vocabulary_tokens())
    rng = random.Random(5)
    for problem in problems(10, seed=5, config=igsm.PRESETS["paper"]) + problems(20, seed=5):
        assert set(prompt_tokens(problem)) | set(solution_tokens(problem, rng, 0.5).tokens) <= vocabulary
