"""The fact table, its cloze items, and the LAMA-style TSV loader (including each bad-file error)."""

from collections import Counter

import pytest

from layerprobe.errors import DataError
from layerprobe.tasks.factual import FACTS, RELATIONS, factual_items, load_lama_tsv, objects_of

LOOKUP = {(fact.relation, fact.subject): fact.answer for fact in FACTS}


def test_table_size_and_shape():
    counts = Counter(fact.relation for fact in FACTS)
    assert len(FACTS) >= 300 and len(counts) >= 8
    assert min(counts.values()) >= 30
    assert len(LOOKUP) == len(FACTS)  # one answer per (relation, subject)
    for fact in FACTS:
        assert fact.prompt == fact.prompt.strip() and fact.prompt[0].isupper()
        assert fact.answer == fact.answer.strip() and fact.subject[1:] in fact.prompt
    assert LOOKUP[("capital", "France")] == "Paris"
    assert [f.prompt for f in FACTS if f.subject == "France" and f.relation == "capital"] == ["The capital of France is"]


def test_items_true_candidate_is_the_fact_and_distractors_are_false():
    items = factual_items(seed=3)
    assert len(items) == len(FACTS)
    for item in items:
        relation, subject = item.meta["subtask"], item.meta["subject"]
        answer = LOOKUP[(relation, subject)]
        assert [item.candidates[i] for i in item.correct] == [" " + answer]
        assert len(set(item.candidates)) == len(item.candidates) == min(10, len(objects_of(relation)))
        assert set(c[1:] for c in item.candidates) <= set(objects_of(relation))
        demos, cloze = item.prompt.rsplit("\n", 1)
        assert cloze == next(f.prompt for f in FACTS if f.relation == relation and f.subject == subject)
        assert len(demos.split("\n")) == 3 and f" {answer}." not in demos  # demonstrations never leak the answer


def test_items_deterministic_and_limit_covers_relations():
    first = factual_items(limit=18, seed=1)
    assert first == factual_items(limit=18, seed=1)
    assert first != factual_items(limit=18, seed=2)
    assert Counter(item.meta["subtask"] for item in first) == {relation: 2 for relation in RELATIONS}


LAMA = ("Prompt\tAns\tCandidate Ans\tSubject\n"
        "The capital of France is <mask>.\tParis\tRome, Paris, Berlin\tFrance\n"
        "The capital of Italy is <mask>.\tRome\tParis, Madrid\tItaly\n"
        "Oslo is the capital of <mask> .\tNorway\tSweden, Denmark, Norway\tOslo\n")


def test_lama_loader(tmp_path):
    path = tmp_path / "lama.tsv"
    path.write_text(LAMA, encoding="utf-8")
    items = load_lama_tsv(path, seed=0, shots=1)
    assert len(items) == 3 and items == load_lama_tsv(path, seed=0, shots=1)
    by_cloze = {item.prompt.rsplit("\n", 1)[-1]: item for item in items}
    italy = by_cloze["The capital of Italy is"]
    assert sorted(italy.candidates) == [" Madrid", " Paris", " Rome"]  # answer added to the file's list
    assert italy.candidates[italy.correct[0]] == " Rome"
    assert italy.prompt.count("\n") == 1 and " Rome." not in italy.prompt
    norway = by_cloze["Oslo is the capital of"]
    assert sorted(norway.candidates) == [" Denmark", " Norway", " Sweden"]


@pytest.mark.parametrize("content, line, field, message", [
    ("Prompt\tAns\tSubject\nA <mask>.\tB\tC\n", 1, "Candidate Ans", "missing column"),
    ("Prompt\tAns\tCandidate Ans\tSubject\nNo mask here.\tB\tC, B\tS\n", 2, "Prompt", "no <mask>"),
    ("Prompt\tAns\tCandidate Ans\tSubject\nA <mask>.\t\tC\tS\n", 2, "Ans", "empty value"),
    ("Prompt\tAns\tCandidate Ans\tSubject\nA <mask>.\tB\tB\tS\n", 2, "Candidate Ans", "holds only the answer"),
    ("", None, None, "empty file"),
])
def test_lama_bad_files(tmp_path, content, line, field, message):
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load_lama_tsv(path)
    error = caught.value
    assert (error.path, error.line, error.field) == (str(path), line, field)
    assert message in str(error) and str(path) in str(error) and "\n" not in str(error)


def test_lama_undecodable_bytes(tmp_path):
    path = tmp_path / "latin1.tsv"
    path.write_bytes("Prompt\tAns\tCandidate Ans\tSubject\nCapital of <mask>.\tBogotá\tLima\tX\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"line 2: undecodable bytes"):
        load_lama_tsv(path)


def test_lama_rows_that_cannot_be_scored_are_skipped(tmp_path, capsys):
    """The study's TSV has rows whose candidate list holds only the answer: they are skipped, not fatal."""
    path = tmp_path / "lama.tsv"
    path.write_text(LAMA + "Madrid is the capital of <mask>.\tSpain\tSpain\tMadrid\n"
                    "No mask in this prompt.\tX\tY, Z\tW\n", encoding="utf-8")
    items = load_lama_tsv(path, seed=0, shots=1)
    assert len(items) == 3 and items.skipped_rows == 2 and items.source == str(path)
    assert all("Madrid is the capital of" not in item.prompt for item in items)
    warning = capsys.readouterr().err.strip()
    assert warning.count("\n") == 0 and "skipped 2 of 5 rows" in warning and "lines 5, 6" in warning
    assert "holds only the answer" in warning and "no <mask>" in warning
