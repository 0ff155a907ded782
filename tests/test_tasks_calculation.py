"""Calculation items: every true result checked by Python's own arithmetic (exact fractions)."""

import re
from collections import Counter
from fractions import Fraction

from layerprobe.tasks.calculation import SUBTASKS, calculation_items


def python_value(expression: str) -> Fraction:
    """Evaluate with Python's precedence, every literal as an exact Fraction."""
    return eval(re.sub(r"\d+(?:\.\d+)?", lambda m: f"Fraction('{m.group()}')", expression), {"Fraction": Fraction})


ITEMS = calculation_items(4, seed=0)


def test_grid_is_complete():
    assert Counter(item.meta["subtask"] for item in ITEMS) == {subtask: 4 for subtask in SUBTASKS}
    assert len(SUBTASKS) == 36


def test_true_result_is_python_arithmetic_and_distractors_are_wrong():
    for item in ITEMS:
        truth = python_value(item.meta["expression"])
        values = [Fraction(candidate.strip()) for candidate in item.candidates]
        assert len(item.candidates) == 4 and len(set(values)) == 4
        assert item.correct == [values.index(truth)]
        assert item.candidates[item.correct[0]].startswith(" ")
        assert item.prompt.endswith(f"Q: What is {item.meta['expression']}?\nA:")
        for question, answer in re.findall(r"Q: What is (.+)\?\nA: (\S+)", item.prompt):
            assert Fraction(answer) == python_value(question)  # demonstrations are solved correctly too


def test_operand_sizes_and_types():
    for item in ITEMS:
        op, digits, kind = item.meta["subtask"].split("/")
        low, high = map(int, digits.split("-"))
        numbers = re.findall(r"\d+(?:\.\d+)?", item.meta["expression"])
        operators = re.findall(r" ([-+*/]) ", item.meta["expression"])
        expected = {"add": ["+"], "sub": ["-"], "mul": ["*"], "div": ["/"]}.get(op)
        if expected:
            assert operators == expected
        else:
            assert len(operators) == int(op[-1]) and operators.count("/") <= 1
        # a dividend is the product of divisor and quotient, so only non-dividends keep the size
        dividends = {i for i, o in enumerate(operators) if o == "/"}
        for i, number in enumerate(numbers):
            if i not in dividends:
                assert low <= len(number.split(".")[0]) <= high
        if kind == "int":
            assert all("." not in n for n in numbers)
        else:
            assert any("." in n for n in numbers)


def test_deterministic_by_seed():
    assert calculation_items(2, seed=5) == calculation_items(2, seed=5)
    assert calculation_items(2, seed=5) != calculation_items(2, seed=6)
