"""Calculation: arithmetic expressions with the true result among plausible wrong results.

Grid (study 1's radar chart): operation in add, sub, mul, div, mix-2 (two operations, three
operands), mix-3 (three operations, four operands); operand size in digits 1-2, 3-4, 5-6 (the
study's "bits" are digits); number type int or float (operands with one or two decimals). The
subtask of an item is "<op>/<digits>/<type>", e.g. "mul/3-4/float". All arithmetic is exact
(`Decimal`); divisions are built as quotient x divisor so every result terminates; mixed
expressions hold at most one division and use the usual precedence.

Prompt: three solved demonstrations of the same subtask in the Q:/A: layout, then the question:

    Q: What is 47 + 8?
    A: 55

    ...

    Q: What is 123 + 45?
    A:

Candidates (" 168", ...): the true result and three distractors drawn from plausible mistakes:
one digit off by one, a dropped or extra carry (+-10^k at one digit position), and the same
expression with one operation swapped (+ <-> -, * <-> +, / <-> *).
"""

from __future__ import annotations

import random
from decimal import Decimal

from layerprobe.tasks.base import MCItem
from layerprobe.tasks.fewshot import interleave, qa_prompt, shuffled_candidates

OPERATIONS = ["add", "sub", "mul", "div", "mix-2", "mix-3"]
DIGITS = ["1-2", "3-4", "5-6"]
TYPES = ["int", "float"]
SUBTASKS = [f"{op}/{digits}/{kind}" for op in OPERATIONS for digits in DIGITS for kind in TYPES]
N_DISTRACTORS = 3
N_SHOTS = 3

_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_SWAP = {"+": "-", "-": "+", "*": "+", "/": "*"}


def format_number(value: Decimal) -> str:
    """Plain decimal notation without trailing zeros: 168, 3.375, -12.5."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def evaluate(tokens: list[str]) -> Decimal:
    """Exact value of 'a op b op c ...' with * and / before + and -, left to right."""
    terms: list[Decimal] = [Decimal(tokens[0])]
    signs: list[str] = []
    for op, number in zip(tokens[1::2], tokens[2::2]):
        value = Decimal(number)
        if op == "*":
            terms[-1] *= value
        elif op == "/":
            terms[-1] /= value
        else:
            signs.append(op)
            terms.append(value)
    total = terms[0]
    for sign, term in zip(signs, terms[1:]):
        total = total + term if sign == "+" else total - term
    return total


def _operand(rng: random.Random, digits: str, kind: str) -> Decimal:
    low, high = (int(d) for d in digits.split("-"))
    n = rng.randint(low, high)
    integer = rng.randint(10 ** (n - 1) if n > 1 else 1, 10**n - 1)
    if kind == "int":
        return Decimal(integer)
    decimals = rng.randint(1, 2)
    fraction = rng.randint(1, 10**decimals - 1)
    if fraction % 10 == 0:
        fraction += 1
    return Decimal(integer) + Decimal(fraction).scaleb(-decimals)


def _expression(rng: random.Random, op: str, digits: str, kind: str) -> list[str]:
    """Tokens of one expression; the number before a '/' is made a multiple of the one after it."""
    if op in _SYMBOL:
        ops = [_SYMBOL[op]]
    else:
        count = int(op.split("-")[1])
        ops = [rng.choice("+-*") for _ in range(count)]
        if rng.random() < 0.5:
            ops[rng.randrange(count)] = "/"
    numbers = [_operand(rng, digits, kind) for _ in range(len(ops) + 1)]
    for i, symbol in enumerate(ops):
        if symbol == "/":
            divisor = Decimal(int(numbers[i + 1]))  # integer divisors keep quotients terminating
            numbers[i + 1] = divisor if divisor > 0 else Decimal(1)
            numbers[i] = numbers[i] * numbers[i + 1]
    if op == "sub" and numbers[0] < numbers[1]:
        numbers.reverse()
    tokens = [format_number(numbers[0])]
    for symbol, number in zip(ops, numbers[1:]):
        tokens += [symbol, format_number(number)]
    return tokens


def _digit_slip(text: str, rng: random.Random) -> str | None:
    """One digit of the result changed by one (None when that would create a leading zero)."""
    i = rng.choice([i for i, c in enumerate(text) if c.isdigit()])
    digit = int(text[i])
    digit = digit + 1 if digit == 0 else digit - 1 if digit == 9 else digit + rng.choice([-1, 1])
    slipped = text[:i] + str(digit) + text[i + 1:]
    integer = slipped.lstrip("-").split(".")[0]
    return None if len(integer) > 1 and integer[0] == "0" else slipped


def distractor_pool(tokens: list[str], rng: random.Random) -> list[Decimal]:
    """Plausible wrong results: digit slips, carry errors, one swapped operation (truth excluded)."""
    truth = evaluate(tokens)
    text = format_number(truth)
    pool: list[Decimal] = []
    for _ in range(3):
        slipped = _digit_slip(text, rng)
        if slipped is not None:
            pool.append(Decimal(slipped))
    integer_digits = len(text.lstrip("-").split(".")[0])
    decimals = len(text.split(".")[1]) if "." in text else 0
    for _ in range(3):
        power = rng.randint(1 if decimals == 0 else -decimals + 1, max(1, integer_digits - 1))
        pool.append(truth + rng.choice([-1, 1]) * Decimal(10) ** power)
    for i in range(1, len(tokens), 2):
        swapped = tokens[:i] + [_SWAP[tokens[i]]] + tokens[i + 1:]
        value = evaluate(swapped)
        if value == value.to_integral_value() or len(format_number(value).split(".")[-1]) <= 4:
            pool.append(value)
    return list(dict.fromkeys(value for value in pool if value != truth))


def calculation_item(rng: random.Random, subtask: str, shots: int = N_SHOTS) -> MCItem:
    op, digits, kind = subtask.split("/")
    demonstrations = []
    for _ in range(shots):
        demo = _expression(rng, op, digits, kind)
        demonstrations.append((f"What is {' '.join(demo)}?", format_number(evaluate(demo))))
    tokens = _expression(rng, op, digits, kind)
    truth = evaluate(tokens)
    pool = distractor_pool(tokens, rng)
    false = rng.sample(pool, min(N_DISTRACTORS, len(pool)))
    step = 1
    while len(false) < N_DISTRACTORS:  # rare: too few distinct mistakes, pad with near misses
        near = truth + step
        if near not in false:
            false.append(near)
        step = -step if step > 0 else -step + 1
    candidates, true_index = shuffled_candidates(format_number(truth), [format_number(v) for v in false], rng)
    return MCItem(prompt=qa_prompt(demonstrations, f"What is {' '.join(tokens)}?"),
                  candidates=[" " + c for c in candidates], correct=[true_index],
                  meta={"subtask": subtask, "language": "en", "expression": " ".join(tokens),
                        "op": op, "digits": digits, "type": kind})


def calculation_items(per_subtask: int, seed: int = 0, subtasks: list[str] | None = None) -> list[MCItem]:
    """`per_subtask` items for every cell of the grid, cells interleaved; deterministic by seed."""
    rng = random.Random(seed)
    cells = subtasks or SUBTASKS
    groups = [[calculation_item(rng, subtask) for _ in range(per_subtask)] for subtask in cells]
    return interleave(groups)
