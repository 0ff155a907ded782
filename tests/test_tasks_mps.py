"""MPS / XMPS generators (equations re-checked by Python) and the MPS / GSM8K JSONL loaders."""

import json
import re

import pytest

from layerprobe.errors import DataError
from layerprobe.tasks.mps import load_gsm8k_jsonl, load_mps_jsonl, mps_items, problem_set
from layerprobe.tasks.xmps import LANGUAGES, xmps_items

EQUATION = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")
FINAL = re.compile(r"(\d+)\D*$")

# closed forms written independently of the generator's step lists
CLOSED_FORM = {
    "bags": lambda q: q["a"] + q["b"] * q["c"],
    "shop": lambda q: q["a"] - q["b"] * q["c"],
    "share": lambda q: q["b"] * q["c"] / q["d"],
    "pages": lambda q: q["c"] - q["a"] * q["b"],
    "stamps": lambda q: (q["a"] - q["b"]) * q["c"],
    "garden": lambda q: q["a"] * q["b"] + q["c"] - q["d"],
}


def equations(text: str) -> list[tuple[int, str, int, int]]:
    return [(int(a), op, int(b), int(c)) for a, op, b, c in EQUATION.findall(text)]


def python_ok(equation: tuple[int, str, int, int]) -> bool:
    a, op, b, c = equation
    return eval(f"{a} {op} {b}") == c


def final_answer(text: str) -> int:
    return int(FINAL.search(text).group(1))


def test_true_solution_matches_closed_form():
    for kind in ("cal", "rea"):
        for problem, wrong, *_ in problem_set(40, seed=1, kind=kind):
            assert problem.solve().answer == CLOSED_FORM[problem.schema.name](problem.quantities)
            assert len(wrong) == 3


@pytest.mark.parametrize("kind", ["cal", "rea"])
def test_items_in_every_language(kind):
    items = xmps_items(12, seed=2, kind=kind)
    assert len(items) == 12 * len(LANGUAGES)
    by_language = {code: [item for item in items if item.meta["language"] == code] for code in LANGUAGES}
    for code, group in by_language.items():
        for item, english in zip(group, by_language["en"]):
            true = item.candidates[item.correct[0]]
            assert equations(true) == equations(english.candidates[english.correct[0]])  # same problem everywhere
            assert all(python_ok(e) for e in equations(true))
            assert final_answer(true) == equations(true)[-1][3]
            for index, wrong in enumerate(item.candidates):
                if index == item.correct[0]:
                    continue
                checks = [python_ok(e) for e in equations(wrong)]
                if kind == "cal":
                    assert checks.count(False) == 1  # exactly one arithmetic slip
                else:
                    assert all(checks)  # reasoning error, arithmetic consistent
                assert final_answer(wrong) != final_answer(true) and final_answer(wrong) == equations(wrong)[-1][3]
            assert len(set(item.candidates)) == 4


def test_mps_prompt_and_determinism():
    items = mps_items(5, seed=3, kind="cal")
    assert items == mps_items(5, seed=3, kind="cal") and items != mps_items(5, seed=4, kind="cal")
    prompt = items[0].prompt
    assert prompt.count("Q: ") == 3 and prompt.endswith("\nA:")
    for solution in re.findall(r"A: (.+)", prompt):  # the two demonstrations are correct solutions
        assert all(python_ok(e) for e in equations(solution))


def write_jsonl(path, records):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")


def test_mps_jsonl_loader(tmp_path):
    path = tmp_path / "mps.jsonl"
    write_jsonl(path, [{"question": f"q{i}", "truth_answer": [f"t{i}"], "error": [f"e{i}", f"f{i}"]} for i in range(3)])
    items = load_mps_jsonl(path, seed=0, shots=1, language="de")
    assert len(items) == 3 and items == load_mps_jsonl(path, seed=0, shots=1, language="de")
    for item in items:
        i = item.prompt[-4]
        assert item.prompt.endswith(f"Q: q{i}\nA:") and item.prompt.count("Q: ") == 2
        assert item.candidates == [f" t{i}", f" e{i}", f" f{i}"] and item.correct == [0]
        assert item.meta["language"] == "de"


def test_gsm8k_loader(tmp_path):
    path = tmp_path / "gsm8k.jsonl"
    write_jsonl(path, [
        {"question": "Natalia sold 48 clips in April and half as many in May. How many in total?",
         "answer": "In May she sold 48/2 = <<48/2=24>>24 clips.\nIn total 48+24 = <<48+24=72>>72 clips.\n#### 72"},
        {"question": "Tom has 3 bags of 5 apples. How many apples?",
         "answer": "He has 3*5 = <<3*5=15>>15 apples.\n#### 15"},
    ])
    for kind in ("cal", "rea"):
        items = load_gsm8k_jsonl(path, kind=kind, seed=0, shots=1)
        natalia = next(item for item in items if "Natalia" in item.prompt.rsplit("Q: ", 1)[1])
        true = natalia.candidates[natalia.correct[0]]
        assert true == " In May she sold 48/2 = 24 clips. In total 48+24 = 72 clips. The answer is 72."
        for index, wrong in enumerate(natalia.candidates):
            if index != natalia.correct[0]:
                assert wrong != true and "<<" not in wrong
                changed = [e for e in re.findall(r"\d+ ?[-+*/] ?\d+ = \d+", wrong)
                           if e not in true]
                assert len(changed) == 1
                lhs, rhs = changed[0].split(" = ")
                assert (eval(lhs) == int(rhs)) == (kind == "rea")


@pytest.mark.parametrize("content, line, field, message", [
    ('{"question": "q", "error": ["e"]}\n', 1, "truth_answer", "missing column"),
    ('{"question": "q", "truth_answer": [], "error": ["e"]}\n{"question": "q", "truth_answer": ["t"], "error": []}\n',
     1, "truth_answer", "non-empty list"),
    ('{"question": "q", "truth_answer": "t", "error": ["e"]}\n', 1, "truth_answer", "expected a list"),
    ('{"question": "q", "truth_answer": ["t"]\n', 1, None, "invalid JSON"),
    ("\n\n", None, None, "empty file"),
])
def test_mps_jsonl_bad_files(tmp_path, content, line, field, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load_mps_jsonl(path)
    assert (caught.value.line, caught.value.field) == (line, field)
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_gsm8k_bad_files(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    good = {"question": "q", "answer": "1+1 = 2\n#### 2"}
    write_jsonl(path, [good, {"question": "q", "answer": "no final"}, {"question": "q", "answer": "#### twelve"}])
    with pytest.raises(DataError, match=r"line 2, field 'answer': answer has no '#### <final answer>' \(and 1 more"):
        load_gsm8k_jsonl(path)
    write_jsonl(path, [good, good, {"question": "q", "answer": "#### twelve"}])
    assert len(load_gsm8k_jsonl(path, seed=0, shots=1)) == 2
    assert "skipped 1 of 3 rows (1 x final answer 'twelve' is not a number; lines 3)" in capsys.readouterr().err
    path.write_bytes(b'{"question": "caf\xe9", "answer": "#### 1"}\n')
    with pytest.raises(DataError, match=r"line 1: undecodable bytes"):
        load_gsm8k_jsonl(path)
