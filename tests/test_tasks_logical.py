"""Logical problems checked by an independent enumeration of models, and the ReClor loader."""

import itertools
import json

import pytest

from layerprobe.errors import DataError
from layerprobe.tasks.logical import load_reclor_json, logical_items


def truth(statement, world):
    """Propositional value under a truth assignment."""
    tag = statement[0]
    if tag == "atom":
        return world[statement[1]]
    if tag == "not":
        return not truth(statement[1], world)
    return truth(statement[2], world) or not truth(statement[1], world)


def atoms(statement):
    return {statement[1]} if statement[0] == "atom" else set().union(*(atoms(s) for s in statement[1:]))


def category_truth(statement, members):
    """Categorical statement over a concrete universe: `members` maps category -> set of individuals."""
    tag, x, y = statement
    if tag == "all":
        return members[x] <= members[y]
    if tag == "no":
        return not members[x] & members[y]
    if tag == "some":
        return bool(members[x] & members[y])
    return bool(members[x] - members[y])


def universes(terms):
    """Every way to place up to 8 individuals (one per membership pattern) into three categories:
    a counter-model of any three-term statement needs at most one individual per pattern."""
    patterns = list(itertools.product([0, 1], repeat=len(terms)))
    for chosen in itertools.product([0, 1], repeat=len(patterns)):
        individuals = [p for p, keep in zip(patterns, chosen) if keep]
        yield {t: {i for i, p in enumerate(individuals) if p[k]} for k, t in enumerate(terms)}


def follows(kind, premises, statement):
    if kind == "conditional":
        names = sorted(set().union(*(atoms(s) for s in premises + [statement])))
        worlds = (dict(zip(names, values)) for values in itertools.product([True, False], repeat=len(names)))
        return all(truth(statement, w) for w in worlds if all(truth(p, w) for p in premises))
    if kind == "syllogism":
        terms = sorted({t for s in premises + [statement] for t in s[1:]})
        return all(category_truth(statement, m) for m in universes(terms)
                   if all(category_truth(p, m) for p in premises))
    people = sorted({p for s in premises + [statement] for p in s[1:]})
    heights = (dict(zip(people, h)) for h in itertools.permutations(range(len(people))))
    return all(h[statement[1]] > h[statement[2]] for h in heights
               if all(h[p[1]] > h[p[2]] for p in premises))


ITEMS = logical_items(15, seed=0)


def test_exactly_the_answer_follows():
    assert {item.meta["subtask"] for item in ITEMS} == {"conditional", "syllogism", "ordering"}
    for item in ITEMS:
        kind, premises, options = item.meta["subtask"], item.meta["premises"], item.meta["options"]
        assert [follows(kind, premises, option) for option in options] == [i in item.correct for i in range(4)]
        assert len(set(item.candidates)) == 4


def test_text_states_the_premises():
    for item in ITEMS:
        question = item.prompt.rsplit("Q: ", 1)[1]
        if item.meta["subtask"] == "ordering":
            for _, taller, shorter in item.meta["premises"]:
                assert (f"{taller} is taller than {shorter}." in question
                        or f"{shorter} is shorter than {taller}." in question)
            _, taller, shorter = item.meta["options"][item.correct[0]]
            assert item.candidates[item.correct[0]] == f" {taller} is taller than {shorter}."
        if item.meta["subtask"] == "syllogism":
            words = {"all": "All {} are {}.", "no": "No {} are {}.", "some": "Some {} are {}.",
                     "some_not": "Some {} are not {}."}
            for tag, x, y in item.meta["premises"]:
                assert words[tag].format(x, y) in question
        assert question.endswith("Which of the following must be true?\nA:")


def test_deterministic():
    assert logical_items(3, seed=4) == logical_items(3, seed=4)
    assert logical_items(3, seed=4) != logical_items(3, seed=5)


def reclor_record(i, label=1):
    return {"context": f"Context {i}.", "question": "Which is right?", "answers": ["a", "b", "c", "d"],
            "label": label, "id_string": f"train_{i}"}


def test_reclor_loader(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps([reclor_record(0, 2), reclor_record(1, 0)]), encoding="utf-8")
    items = load_reclor_json(path, seed=0)
    assert len(items) == 2
    for item in items:
        assert item.candidates == [" a", " b", " c", " d"]
        i = int(item.prompt.rsplit("Context ", 1)[1][0])
        assert item.correct == [[2, 0][i]]
        assert item.prompt.endswith(f"Q: Context {i}. Which is right?\nA:") and item.prompt.count("Q: ") == 2


BAD_RECORDS = [
    (reclor_record(1, label=4), "label", "not an index 0-3"),
    ({k: v for k, v in reclor_record(1).items() if k != "label"}, "label", "unlabelled test split"),
    ({**reclor_record(1), "answers": ["a", "b", "c"]}, "answers", "4 non-empty answer strings"),
    ({**reclor_record(1), "context": None}, "context", "missing value"),
]


@pytest.mark.parametrize("record, field, message", BAD_RECORDS)
def test_reclor_bad_record_is_skipped(tmp_path, capsys, record, field, message):
    path = tmp_path / "val.json"
    text = json.dumps([reclor_record(0), record], indent=1)
    path.write_text(text, encoding="utf-8")
    second_object = [number for number, line in enumerate(text.splitlines(), start=1) if line == " {"][1]
    [item] = load_reclor_json(path)
    assert item.prompt.endswith("Q: Context 0. Which is right?\nA:")
    warning = capsys.readouterr().err
    assert "skipped 1 of 2 rows (1 x " in warning and message in warning and f"lines {second_object})" in warning


@pytest.mark.parametrize("record, field, message", BAD_RECORDS)
def test_reclor_mostly_bad_file_is_refused(tmp_path, record, field, message):
    path = tmp_path / "val.json"
    text = json.dumps([record, record, reclor_record(0)], indent=1)
    path.write_text(text, encoding="utf-8")
    first_object = [number for number, line in enumerate(text.splitlines(), start=1) if line == " {"][0]
    with pytest.raises(DataError) as caught:
        load_reclor_json(path)
    assert caught.value.field == field and caught.value.line == first_object and message in str(caught.value)
    assert "2 of 3 rows unusable" in str(caught.value)


def test_reclor_empty_and_undecodable(tmp_path):
    path = tmp_path / "val.json"
    path.write_text("  \n", encoding="utf-8")
    with pytest.raises(DataError, match="empty file"):
        load_reclor_json(path)
    path.write_bytes(b'[{"context": "\xff"}]')
    with pytest.raises(DataError, match="line 1: undecodable bytes"):
        load_reclor_json(path)
