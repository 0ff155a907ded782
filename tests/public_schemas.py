"""Small records in each public schema (as the Hugging Face datasets and the study's files hold them),
good ones and bad ones, for the round-trip and row-skipping tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class PublicSchema:
    name: str
    script: str                                   # the study-1 script that reads it
    good: Callable[[int], dict]                   # the i-th good record
    bad: list[dict]                               # records that cannot make an item
    true_candidates: Callable[[dict], list[str]]  # what a good record's true candidates must be
    false_candidates: Callable[[dict], list[str]]


def _mmlu(i: int) -> dict:
    return {"question": f"Question {i}: which option is number {i % 4}?", "subject": ["anatomy", "virology"][i % 2],
            "choices": [f"option {i}-{k}" for k in range(4)], "answer": i % 4}


def _reclor(i: int) -> dict:
    return {"context": f"Context {i}.", "question": "Which one follows?", "answers": [f"answer {i}-{k}" for k in range(4)],
            "label": (i * 3) % 4, "id_string": f"train_{i}"}


def _tfqa_mc(i: int) -> dict:
    return {"question": f"Is claim {i} true?",
            "mc1_targets": {"choices": [f"True answer {i}.", f"False answer {i}.", f"Other false {i}."], "labels": [1, 0, 0]},
            "mc2_targets": {"choices": [f"True answer {i}.", f"Also true {i}.", f"False answer {i}."], "labels": [1, 1, 0]}}


def _tfqa_generation(i: int) -> dict:
    return {"type": "Adversarial", "category": "Misconceptions", "question": f"Is claim {i} true?",
            "best_answer": f"True answer {i}.", "correct_answers": [f"True answer {i}", f"Also true {i}"],
            "incorrect_answers": [f"False answer {i}", f"Other false {i}"], "source": "https://example.org"}


def _lama(i: int) -> dict:
    return {"Prompt": f"Thing {i} is made in <mask> .", "Ans": f"Country{i}",
            "Candidate Ans": ", ".join(f"Country{k}" for k in (i, i + 1, i + 2)), "Subject": f"Thing {i}"}


def _gsm8k(i: int) -> dict:
    a, b = i + 2, i + 3
    return {"question": f"Sam has {a} bags of {b} apples and eats 1. How many are left?",
            "answer": f"Sam has {a}*{b} = <<{a}*{b}={a * b}>>{a * b} apples.\nThen {a * b}-1 = <<{a * b}-1={a * b - 1}>>"
                      f"{a * b - 1} are left.\n#### {a * b - 1}"}


def _mps(i: int) -> dict:
    return {"question": f"What is {i} + {i}?", "truth_answer": [f"{i} + {i} = {2 * i}. The answer is {2 * i}."],
            "error": [f"{i} + {i} = {2 * i + 1}. The answer is {2 * i + 1}.", f"{i} * {i} = {i * i}. The answer is {i * i}."]}


SCHEMAS = [
    PublicSchema("cais/mmlu", "probe_mmlu.py", _mmlu,
                 [{**_mmlu(90), "answer": 9}, {**_mmlu(91), "choices": ["same", "same", "x", "y"], "answer": 1}],
                 lambda r: [r["choices"][r["answer"]]], lambda r: [c for k, c in enumerate(r["choices"]) if k != r["answer"]]),
    PublicSchema("ReClor", "probe_logical.py", _reclor,
                 [{**_reclor(90), "label": None}, {**_reclor(91), "answers": ["only", "three", "answers"]}],
                 lambda r: [r["answers"][r["label"]]], lambda r: [a for k, a in enumerate(r["answers"]) if k != r["label"]]),
    PublicSchema("truthful_qa/multiple_choice", "probe_tfqa.py", _tfqa_mc,
                 [{**_tfqa_mc(90), "mc1_targets": {"choices": ["a", "b"], "labels": [1, 1]}},
                  {**_tfqa_mc(91), "mc2_targets": {"choices": ["x", "y"], "labels": [0, 0]}}],
                 lambda r: [c for c, l in zip(r["mc2_targets"]["choices"], r["mc2_targets"]["labels"]) if l],
                 lambda r: sorted({c for t in ("mc1_targets", "mc2_targets")
                                   for c, l in zip(r[t]["choices"], r[t]["labels"]) if not l})),
    PublicSchema("truthful_qa/generation", "probe_tfqa.py", _tfqa_generation,
                 [{**_tfqa_generation(90), "incorrect_answers": []}, {**_tfqa_generation(91), "best_answer": " "}],
                 lambda r: [r["best_answer"], f"{r['correct_answers'][1]}."],
                 lambda r: [f"{a}." for a in r["incorrect_answers"]]),
    PublicSchema("LAMA", "probe_factual.py", _lama,
                 [{**_lama(90), "Candidate Ans": "Country90"}, {**_lama(91), "Prompt": "No mask here."}],
                 lambda r: [r["Ans"]], lambda r: [c for c in r["Candidate Ans"].split(", ") if c != r["Ans"]]),
    PublicSchema("GSM8K", "probe_math.py", _gsm8k,
                 [{**_gsm8k(90), "answer": "no final answer"}, {**_gsm8k(91), "answer": "#### many"}],
                 lambda r: [], lambda r: []),  # the candidates are derived: checked in test_tasks_mps
    PublicSchema("study-1 MPS", "probe_math.py", _mps,
                 [{**_mps(90), "truth_answer": []}, {**_mps(91), "question": ""}],
                 lambda r: r["truth_answer"], lambda r: r["error"]),
]


def records(schema: PublicSchema, good: int, bad_every: int | None = None) -> tuple[list[dict], list[int]]:
    """`good` good records with a bad one after every `bad_every` (cycling through `schema.bad`);
    returns the records and the 0-based indices of the bad ones."""
    out, bad_at = [], []
    for i in range(good):
        out.append(schema.good(i))
        if bad_every and (i + 1) % bad_every == 0:
            bad_at.append(len(out))
            out.append(schema.bad[len(bad_at) % len(schema.bad)])
    return out, bad_at
