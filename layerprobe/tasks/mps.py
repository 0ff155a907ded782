"""Math problem solving (MPS): word problems with a correct solution among wrong ones.

Generated problems come from six schemas (apples in bags, shopping, sharing cookies, pages left,
stamps, a garden in three steps). A `Problem` holds the quantities and the solution steps as
(left, op, right, result) with references to quantities or earlier steps, so that wrong
solutions can be derived exactly:

- MPS-CAL (`kind="cal"`): the arithmetic of one step is wrong (result off by a small amount or a
  slipped digit); later steps compute correctly from the wrong value.
- MPS-REA (`kind="rea"`): the reasoning of one step is wrong (another quantity of the problem, or
  the wrong operation) while every equation is computed correctly.

Each item's candidates are the correct solution and three wrong solutions of one kind (chance 1/4).
Solutions read "Anna buys 3 * 4 = 12 apples. Now Anna has 5 + 12 = 17 apples. The answer is 17.";
English text lives in `ENGLISH` (`layerprobe.tasks.xmps` adds the translations). Prompt: two solved demonstrations in the Q:/A: layout, then "Q: <problem>\\nA:".

Loaders: study-1 MPS JSONL (`{question, truth_answer: [str], error: [str]}` per line: the
candidates are the true answers then the errors; the cross-lingual files have the same shape)
and GSM8K JSONL (`{question, answer}`, final answer after "#### "): calculator annotations
<<...>> are dropped, "#### X" becomes "The answer is X.", and wrong solutions are made by
changing the result of one equation (cal) or its operation, with that equation recomputed (rea;
later lines are left as written, so they may no longer follow). Both also read the same columns from
Parquet or the hub (`hf:openai/gsm8k:main:test`); a row without a numeric final answer, or from which
no wrong solution can be derived, is skipped with one warning (`layerprobe.tasks.io`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from layerprobe.tasks.base import MCItem
from layerprobe.tasks.fewshot import qa_prompt, shuffled_candidates, with_demonstrations
from layerprobe.tasks.io import LoadedItems, RowLog, RowProblem, Rows, read_rows, string_list, text

N_WRONG = 3
N_SHOTS = 2

Step = tuple[str, str, str]  # (left reference, op, right reference); references are quantity names or "s1", "s2", ...


@dataclass(frozen=True)
class Schema:
    name: str
    steps: list[Step]
    draw: Callable[[random.Random], dict[str, int]]


@dataclass(frozen=True)
class Language:
    """How one language writes the problems: question and step templates per schema, answer line, joiner."""

    names: list[str]
    questions: dict[str, str]
    steps: dict[str, list[str]]
    answer: str
    joiner: str = " "


def _draw_bags(rng: random.Random) -> dict[str, int]:
    return {"a": rng.randint(2, 30), "b": rng.randint(2, 9), "c": rng.randint(2, 12)}


def _draw_shop(rng: random.Random) -> dict[str, int]:
    b, c = rng.randint(2, 9), rng.randint(2, 9)
    return {"a": b * c + rng.randint(5, 120), "b": b, "c": c}


def _draw_share(rng: random.Random) -> dict[str, int]:
    d = rng.randint(2, 6)
    return {"b": rng.randint(2, 9), "c": d * rng.randint(2, 6), "d": d}


def _draw_pages(rng: random.Random) -> dict[str, int]:
    a, b = rng.randint(5, 20), rng.randint(2, 9)
    return {"a": a, "b": b, "c": a * b + rng.randint(10, 150)}


def _draw_stamps(rng: random.Random) -> dict[str, int]:
    a = rng.randint(20, 99)
    return {"a": a, "b": rng.randint(2, a - 10), "c": rng.randint(2, 5)}


def _draw_garden(rng: random.Random) -> dict[str, int]:
    a, b = rng.randint(2, 9), rng.randint(2, 12)
    return {"a": a, "b": b, "c": rng.randint(2, 20), "d": rng.randint(1, a * b)}


SCHEMAS: list[Schema] = [
    Schema("bags", [("b", "*", "c"), ("a", "+", "s1")], _draw_bags),
    Schema("shop", [("b", "*", "c"), ("a", "-", "s1")], _draw_shop),
    Schema("share", [("b", "*", "c"), ("s1", "/", "d")], _draw_share),
    Schema("pages", [("a", "*", "b"), ("c", "-", "s1")], _draw_pages),
    Schema("stamps", [("a", "-", "b"), ("s1", "*", "c")], _draw_stamps),
    Schema("garden", [("a", "*", "b"), ("s1", "+", "c"), ("s2", "-", "d")], _draw_garden),
]

ENGLISH = Language(
    names=["Anna", "Ben", "Carla", "David", "Emma", "Omar", "Lucy", "Sam"],
    questions={
        "bags": "{name} has {a} apples. {name} buys {b} bags with {c} apples in each bag. How many apples does {name} have now?",
        "shop": "{name} has {a} dollars and buys {b} books that cost {c} dollars each. How many dollars does {name} have left?",
        "share": "{name} has {b} boxes with {c} cookies in each box and shares them equally among {d} friends. How many cookies does each friend get?",
        "pages": "A book has {c} pages. {name} reads {a} pages every day for {b} days. How many pages are left to read?",
        "stamps": "{name} has {a} stamps and gives {b} stamps to a friend. Then {name} buys stamps until the collection is {c} times as big. How many stamps does {name} have now?",
        "garden": "{name} plants {a} rows of {b} tomato plants and then {c} more plants. Later {d} plants die. How many plants are left?",
    },
    steps={
        "bags": ["{name} buys {eq} apples.", "Now {name} has {eq} apples."],
        "shop": ["The books cost {eq} dollars.", "{name} has {eq} dollars left."],
        "share": ["There are {eq} cookies.", "Each friend gets {eq} cookies."],
        "pages": ["{name} reads {eq} pages.", "There are {eq} pages left."],
        "stamps": ["{name} keeps {eq} stamps.", "Now {name} has {eq} stamps."],
        "garden": ["{name} plants {eq} plants in rows.", "With the extra plants there are {eq} plants.",
                   "So {eq} plants are left."],
    },
    answer="The answer is {}.",
)

_OPS: dict[str, Callable[[Fraction, Fraction], Fraction]] = {
    "+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y, "/": lambda x, y: x / y,
}
_REA_SWAP = {"+": "-", "-": "+", "*": "+", "/": "*"}


@dataclass
class Solution:
    """Solution steps as numbers: (left, op, right, written result); correct if every result is the true value."""

    equations: list[tuple[int, str, int, int]]

    @property
    def answer(self) -> int:
        return self.equations[-1][3]


@dataclass
class Problem:
    schema: Schema
    quantities: dict[str, int]
    name_index: int

    def solve(self, steps: list[Step] | None = None, wrong_step: int | None = None, delta: int = 0) -> Solution | None:
        """Compute the steps (optionally altered; optionally step `wrong_step` misreported by `delta`).

        None if a value stops being a positive whole number (no grade-school solution writes that).
        """
        values: dict[str, int] = dict(self.quantities)
        equations = []
        for index, (left, op, right) in enumerate(steps or self.schema.steps):
            exact = _OPS[op](Fraction(values[left]), Fraction(values[right]))
            if exact.denominator != 1 or exact <= 0:
                return None
            written = int(exact) + (delta if index == wrong_step else 0)
            if written <= 0:
                return None
            equations.append((values[left], op, values[right], written))
            values[f"s{index + 1}"] = written
        return Solution(equations)


def draw_problem(rng: random.Random) -> Problem:
    schema = rng.choice(SCHEMAS)
    return Problem(schema, schema.draw(rng), rng.randrange(8))


def _cal_variant(problem: Problem, rng: random.Random) -> Solution | None:
    step = rng.randrange(len(problem.schema.steps))
    delta = rng.choice([-10, -2, -1, 1, 2, 10])
    return problem.solve(wrong_step=step, delta=delta)


def _rea_variant(problem: Problem, rng: random.Random) -> Solution | None:
    steps = list(problem.schema.steps)
    index = rng.randrange(len(steps))
    left, op, right = steps[index]
    if rng.random() < 0.5:
        steps[index] = (left, _REA_SWAP[op], right)
    else:
        used = {left, right}
        others = [name for name in problem.quantities if name not in used
                  and problem.quantities[name] not in (problem.quantities.get(left), problem.quantities.get(right))]
        swappable = [side for side, ref in (("left", left), ("right", right)) if ref in problem.quantities]
        if not others or not swappable:
            return None
        replacement = rng.choice(others)
        steps[index] = (replacement, op, right) if rng.choice(swappable) == "left" else (left, op, replacement)
    return problem.solve(steps)


def wrong_solutions(problem: Problem, kind: str, rng: random.Random, count: int = N_WRONG) -> list[Solution]:
    """`count` distinct wrong solutions of one kind, each with a final answer different from the truth."""
    truth = problem.solve()
    variant = _cal_variant if kind == "cal" else _rea_variant
    found: dict[tuple, Solution] = {}
    for _ in range(200):
        solution = variant(problem, rng)
        if solution is not None and solution.answer != truth.answer:
            found.setdefault(tuple(solution.equations), solution)
        if len(found) == count:
            break
    return list(found.values())


def render_question(problem: Problem, language: Language) -> str:
    return language.questions[problem.schema.name].format(name=language.names[problem.name_index], **problem.quantities)


def render_solution(problem: Problem, solution: Solution, language: Language) -> str:
    name = language.names[problem.name_index]
    sentences = [template.format(name=name, eq=f"{left} {op} {right} = {result}")
                 for template, (left, op, right, result) in zip(language.steps[problem.schema.name], solution.equations)]
    sentences.append(language.answer.format(solution.answer))
    return language.joiner.join(sentences)


def problem_set(count: int, seed: int, kind: str) -> list[tuple[Problem, list[Solution], Problem, Problem]]:
    """Problems with their wrong solutions and two demonstration problems each; language-free, so
    XMPS renders the very same problems in every language."""
    rng = random.Random(f"{seed}-{kind}")
    out = []
    while len(out) < count:
        problem = draw_problem(rng)
        wrong = wrong_solutions(problem, kind, rng)
        demos = [draw_problem(rng) for _ in range(N_SHOTS)]
        if len(wrong) == N_WRONG:
            out.append((problem, wrong, *demos))
    return out


def render_item(problem: Problem, wrong: list[Solution], demos: list[Problem], language: Language, rng: random.Random,
                subtask: str, code: str) -> MCItem:
    demonstrations = [(render_question(demo, language), render_solution(demo, demo.solve(), language)) for demo in demos]
    true_text = render_solution(problem, problem.solve(), language)
    candidates, true_index = shuffled_candidates(true_text, [render_solution(problem, s, language) for s in wrong], rng)
    return MCItem(prompt=qa_prompt(demonstrations, render_question(problem, language)),
                  candidates=[" " + c for c in candidates], correct=[true_index],
                  meta={"subtask": subtask, "language": code, "schema": problem.schema.name})


def mps_items(count: int, seed: int = 0, kind: str = "cal") -> list[MCItem]:
    """English MPS-CAL or MPS-REA items; deterministic by seed."""
    rng = random.Random(f"{seed}-{kind}-order")
    return [render_item(problem, wrong, [d1, d2], ENGLISH, rng, "", "en")
            for problem, wrong, d1, d2 in problem_set(count, seed, kind)]


# --------------------------------------------------------------------------- loaders


MPS_COLUMNS = ["question", "truth_answer", "error"]
GSM8K_COLUMNS = ["question", "answer"]


def _mps_row(record: dict[str, Any]) -> tuple[str, list[str], list[str]]:
    return text(record, "question"), string_list(record, "truth_answer"), string_list(record, "error")


def load_mps_jsonl(source: str | Path | Rows, limit: int | None = None, seed: int = 0, shots: int = N_SHOTS,
                   language: str = "en") -> LoadedItems:
    """Study-1 MPS JSONL: true answers and errors as candidates; demonstrations from other lines."""
    rows = read_rows(source)
    rows.require(MPS_COLUMNS)
    log = RowLog(rows)
    records = [record for _, record in log.parse(_mps_row)]
    items = []
    for (question, truths, errors), demos in with_demonstrations(records, random.Random(seed), shots, limit):
        demonstrations = [(q, t[0]) for q, t, _ in demos]
        items.append(MCItem(prompt=qa_prompt(demonstrations, question), candidates=[" " + t for t in truths + errors],
                            correct=list(range(len(truths))), meta={"subtask": "", "language": language}))
    return log.finish(items)


_ANNOTATION = re.compile(r"<<[^<>]*>>")
_EQUATION = re.compile(r"(\d+(?:\.\d+)?)\s*([-+*/])\s*(\d+(?:\.\d+)?)\s*=\s*(\d+(?:\.\d+)?)")


def gsm8k_solution(answer: str) -> tuple[str, str]:
    """(solution text without calculator annotations ending "The answer is X.", X); `RowProblem` if
    the answer has no numeric final answer after '####'."""
    if "####" not in answer:
        raise RowProblem("answer has no '#### <final answer>'", "answer")
    body, final = answer.rsplit("####", 1)
    final = final.strip().replace(",", "")
    if not final:
        raise RowProblem("empty final answer after '####'", "answer")
    try:
        Fraction(final)
    except (ValueError, ZeroDivisionError):
        raise RowProblem(f"final answer {final!r} is not a number", "answer") from None
    body = " ".join(_ANNOTATION.sub("", body).split())
    return f"{body} The answer is {final}.", final


def _fraction_text(value: Fraction) -> str | None:
    if value.denominator == 1:
        return str(value.numerator)
    decimal = value.numerator / value.denominator
    return f"{decimal:g}" if Fraction(f"{decimal:g}") == value else None


def gsm8k_wrong_solutions(text: str, final: str, kind: str, rng: random.Random, count: int = N_WRONG) -> list[str]:
    """Wrong variants of a GSM8K solution: one equation's result changed (cal) or its operation (rea)."""
    matches = list(_EQUATION.finditer(text))
    found: list[str] = []
    for _ in range(100):
        if len(found) == count:
            break
        if matches:
            match = rng.choice(matches)
            left, op, right, result = match.groups()
            if kind == "cal":
                new_op, value = op, Fraction(result) + rng.choice([-10, -2, -1, 1, 2, 10])
            else:
                new_op = _REA_SWAP[op]
                value = _OPS[new_op](Fraction(left), Fraction(right))
            new_result = _fraction_text(value)
            if new_result is None or new_result == result or value < 0:
                continue
            equation = f"{left} {new_op} {right} = {new_result}"
            variant = text[:match.start()] + equation + text[match.end():]
            if match.end() >= len(text) - len(f" The answer is {final}.") - 1 or result == final:
                variant = variant.replace(f"The answer is {final}.", f"The answer is {new_result}.")
        else:
            wrong_final = int(Fraction(final)) + rng.choice([-10, -2, -1, 1, 2, 10])
            variant = text.replace(f"The answer is {final}.", f"The answer is {wrong_final}.")
        if variant != text and variant not in found:
            found.append(variant)
    return found


def _gsm8k_row(record: dict[str, Any]) -> tuple[str, str, str]:
    return (text(record, "question"), *gsm8k_solution(text(record, "answer")))


def load_gsm8k_jsonl(source: str | Path | Rows, limit: int | None = None, seed: int = 0, kind: str = "cal",
                     shots: int = N_SHOTS) -> LoadedItems:
    """GSM8K JSONL as MPS-CAL or MPS-REA items (true solution among derived wrong ones); a row from
    which no wrong solution can be derived is skipped."""
    rows = read_rows(source)
    rows.require(GSM8K_COLUMNS)
    log = RowLog(rows)
    parsed = log.parse(_gsm8k_row)
    rng = random.Random(f"{seed}-{kind}")
    items = []
    for (where, (question, solution, final)), demos in with_demonstrations(parsed, rng, shots):
        wrong = gsm8k_wrong_solutions(solution, final, kind, rng)
        if not wrong:
            log.skip(where, "no wrong solution could be derived", "answer")
            continue
        candidates, true_index = shuffled_candidates(solution, wrong, rng)
        items.append(MCItem(prompt=qa_prompt([(q, s) for _, (q, s, _) in demos], question),
                            candidates=[" " + c for c in candidates], correct=[true_index],
                            meta={"subtask": "", "language": "en"}))
    return log.finish(items[:limit])
