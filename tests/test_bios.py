"""bioS population, biographies, augmentations, QA and vocabulary."""

import re

import pytest

from layerprobe.errors import LayerprobeError
from layerprobe.synthetic import bios
from layerprobe.synthetic.data import bios_docs, qa_doc, qa_docs


@pytest.fixture(scope="module")
def population():
    return bios.make_population(300, seed=0)


def test_population_invariants(population):
    people = population.people
    assert len({p.name for p in people}) == 300
    assert all(p.employer_city == bios.EMPLOYERS[p.employer] for p in people)
    employer_to_city = {}
    for p in people:  # the employer city is a function of the employer
        assert employer_to_city.setdefault(p.employer, p.employer_city) == p.employer_city
    assert not set(population.qa_train) & set(population.qa_test)
    assert sorted(population.qa_train + population.qa_test) == list(range(300))
    assert len(population.qa_train) == 150
    assert all(1 <= p.birth_day <= 28 and 1900 <= p.birth_year <= 2099 and 1 <= p.birth_month <= 12 for p in people)
    assert {p.pronoun for p in people} == {"He", "She"}
    assert all((p.first in bios.FIRST_FEMALE) == p.female for p in people)
    with pytest.raises(LayerprobeError, match="between 2 and"):
        bios.make_population(10**7)


def test_deterministic_by_seed(population):
    again = bios.make_population(300, seed=0)
    assert again.people == population.people and again.qa_test == population.qa_test
    assert bios.make_population(300, seed=1).people != population.people
    first = bios.biographies(population, multi=2, permute=True, fullname=True, seed=3)
    assert first == bios.biographies(population, multi=2, permute=True, fullname=True, seed=3)
    assert first != bios.biographies(population, multi=2, permute=True, fullname=True, seed=4)


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=\.) ", text) if s]


def test_biographies_and_augmentations(population):
    person = population.people[0]
    single = bios.biographies(population, seed=0)[0]
    assert len(single) == 1
    text = single[0]
    assert text.startswith(person.name) and text.count(person.name) == 1 and text.count(person.pronoun + " ") == 5
    for attribute in bios.ATTRIBUTES:
        assert person.value(attribute) in text
    order = [next(a for a in bios.ATTRIBUTES if person.value(a) in s and (a != "employer_city" or person.employer not in s))
             for s in sentences(text)]
    assert order == list(bios.ATTRIBUTES)  # bioS single keeps the fixed order
    multi = bios.biographies(population, multi=5, permute=True, fullname=True, seed=0)
    assert all(len(texts) == 5 for texts in multi)
    assert all(t.count(p.name) == 6 for p, texts in zip(population.people, multi) for t in texts)
    distinct_orders = {tuple(sorted(sentences(t), key=len)) != tuple(sentences(t)) for texts in multi for t in texts}
    assert distinct_orders == {True, False}  # permuted: the order varies
    assert sum(len(set(texts)) for texts in multi) > 0.95 * 5 * len(multi)  # re-templated


def test_qa_and_vocabulary_cover_everything(population):
    vocab = bios.build_vocab()
    everyone = list(range(300))
    docs = bios_docs(vocab, population, augment=True, multi=3, seed=0) + qa_docs(vocab, population, everyone, True)
    assert len(docs) == 300 * 3 + 300 * len(bios.ATTRIBUTES)
    assert len(qa_docs(vocab, population, everyone, True, tasks=bios.TASKS_32)) == 300 * len(bios.TASKS_32)
    person = population.people[1]
    assert bios.qa(person, "inverse") == (f"Who was born on {person.birth_date} in {person.birth_city}?", person.name)
    assert bios.qa(person, "birth_year")[1] == str(person.birth_year)
    doc = qa_doc(vocab, person, "employer", answer_only=True)
    answer_ids = vocab.encode(bios.words(person.employer), eos=True)
    assert doc.ids[-len(answer_ids):] == answer_ids
    assert [i for i, t in zip(doc.ids, doc.target) if t] == answer_ids  # loss only on the answer and <eos>
    tokens, where = bios.canonical_biography(person)
    assert tokens[where["name"]] == person.last
    for attribute in bios.ATTRIBUTES:
        value = bios.words(person.value(attribute))
        assert tokens[where[attribute]:where[attribute] + len(value)] == value
    assert person.label("birth_date") == person.birth_month - 1
    assert bios.CITIES[person.label("employer_city")] == person.employer_city


def test_bior_prose_has_many_templates_in_random_order(population):
    assert all(len(set(options)) >= 20 and set(bios.TEMPLATES[a]) <= set(options) for a, options in bios.TEMPLATES_R.items())
    vocab = bios.build_vocab("bioR")
    assert bios.build_vocab().tokens == vocab.tokens[:len(bios.build_vocab())]  # bioS ids unchanged
    texts = bios.biographies(population, multi=4, seed=0, prose="bioR")
    docs = bios_docs(vocab, population, augment=False, multi=1, seed=0, prose="bioR")
    assert len(docs) == 300
    person = population.people[0]
    orders = set()
    for text in texts[0]:
        assert text.startswith(person.name) and all(person.value(a) in text for a in bios.ATTRIBUTES)
        orders.add(tuple(next(a for a in bios.ATTRIBUTES if person.value(a) in s and (a != "employer_city" or person.employer not in s))
                         for s in sentences(text)))
    assert len(orders) > 1  # bioR shuffles even without --augment
    assert any("was raised in the streets of" in t for per in texts for t in per)  # a bioR-only template occurs
    assert not any("was raised in the streets of" in t for per in bios.biographies(population, multi=4) for t in per)
    with pytest.raises(KeyError):
        bios_docs(bios.build_vocab(), population, augment=False, multi=1, seed=0, prose="bioR")


def test_celebrities_alone_get_augmentation_and_qa_training(population):
    from layerprobe.synthetic.runs import RunConfig, validate

    stars = bios.celebrities(population, 0.3)
    assert len(stars) == 90 and stars == bios.celebrities(population, 0.3)
    vocab = bios.build_vocab()
    docs = bios_docs(vocab, population, augment=True, multi=5, seed=0, only=stars)
    assert len(docs) == 90 * 5 + 210
    texts = [vocab.decode(doc.ids) for doc in docs]
    star_names = {population.people[i].last for i in stars}
    full = [t for t in texts if sum(w == t[2] for w in t) == 6]  # the full name (last word at index 2) in all six sentences
    assert len(full) == 450 and {t[2] for t in full} <= star_names
    config = RunConfig(world="bios", augment=True, celebrities=0.3, people=300)
    assert config.name() == "bios-celeb0.3-mixed-aug-llama"
    splits = config.qa_splits(population)
    assert sorted(splits["train"] + splits["test"]) == stars
    assert sorted(splits["minority"] + stars) == list(range(300))
    assert set(splits["train"]) <= set(population.qa_train)
    with pytest.raises(LayerprobeError, match="--celebrities needs"):
        validate(RunConfig(world="bios", augment=False, celebrities=0.3))
