"""Logical reasoning: generated 4-option deductive problems, and the ReClor JSON loader.

Three kinds (the item's subtask):

- conditional: a chain "If A, then B. If B, then C. ..." (premises shuffled), sometimes with a
  fact ("C is not true"); the answer is what follows (hypothetical syllogism, modus ponens, modus
  tollens); distractors are the classic invalid inferences: converse, inverse, affirming the
  consequent, denying the antecedent.
- syllogism: two categorical premises over made-up categories ("All wumpuses are tumpuses"), so
  world knowledge cannot help; the answer is the valid mood's conclusion (Barbara, Celarent, Darii,
  Ferio); distractors are conversions and other conclusions that do not follow.
- ordering: heights of four or five people given by some pairwise comparisons; the answer is a
  comparison that follows by transitivity but is not stated; distractors are undetermined or
  reversed comparisons.

Every statement also exists in a formal form (`meta["premises"]`, `meta["options"]`), and every
option is checked by enumerating all models (truth assignments, the 2^8 region patterns of three
categories, all orders): the answer holds in every model of the premises, each distractor fails
in at least one. Statements are evaluated without existential import (modern reading).

Prompt: two solved demonstrations, then "Q: <premises> Which of the following must be true?\\nA:";
candidates are the four option sentences.

ReClor JSON (`load_reclor_json`): `[{context, question, answers[4], label, id_string}]`; prompt
"Q: <context> <question>\\nA:" with one demonstration from another record; candidates the four
answers. A record without a label cannot be scored and is skipped; the unlabelled test split is
refused whole (more than half of its rows unusable). JSON lines, Parquet and hub copies of the
same schema (`context, question, answers, label`) are read too.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from layerprobe.tasks.base import MCItem
from layerprobe.tasks.fewshot import interleave, qa_prompt, shuffled_candidates, with_demonstrations
from layerprobe.tasks.io import LoadedItems, RowLog, RowProblem, Rows, integer, read_rows, string_list, text

KINDS = ["conditional", "syllogism", "ordering"]
QUESTION = "Which of the following must be true?"
N_OPTIONS = 4
N_SHOTS = 2

Statement = tuple  # ("atom", p) | ("not", s) | ("if", s, s) | ("all"|"no"|"some"|"some_not", X, Y) | ("taller", a, b)

CLAUSES = [
    ("it rains", "it does not rain"), ("the street is wet", "the street is not wet"),
    ("the game is cancelled", "the game is not cancelled"), ("Mia stays home", "Mia does not stay home"),
    ("the bell rings", "the bell does not ring"), ("the class starts", "the class does not start"),
    ("the oven is hot", "the oven is not hot"), ("the bread bakes", "the bread does not bake"),
    ("the door is locked", "the door is not locked"), ("the alarm sounds", "the alarm does not sound"),
    ("Sam is late", "Sam is not late"), ("the bus leaves", "the bus does not leave"),
    ("the light is green", "the light is not green"), ("the cars move", "the cars do not move"),
    ("the battery is charged", "the battery is not charged"), ("the robot works", "the robot does not work"),
]
CATEGORIES = ["wumpuses", "yumpuses", "zumpuses", "dumpuses", "rompuses", "numpuses", "tumpuses", "vumpuses",
              "impuses", "jompuses", "gorpuses", "brimpuses", "lempuses", "sterpuses", "grimpuses", "shumpuses"]
PEOPLE = ["Alice", "Bob", "Carol", "Dan", "Eve", "Frank", "Grace", "Hank", "Ivy", "Jack", "Kate", "Leo"]


# --------------------------------------------------------------------------- semantics (model enumeration)

def _holds_prop(statement: Statement, world: dict[str, bool]) -> bool:
    tag = statement[0]
    if tag == "atom":
        return world[statement[1]]
    if tag == "not":
        return not _holds_prop(statement[1], world)
    return (not _holds_prop(statement[1], world)) or _holds_prop(statement[2], world)


def _atoms(statement: Statement) -> set[str]:
    if statement[0] == "atom":
        return {statement[1]}
    return set().union(*(_atoms(part) for part in statement[1:]))


def _holds_category(statement: Statement, regions: frozenset[frozenset[str]]) -> bool:
    """`regions`: the non-empty membership patterns (each the set of categories an individual is in)."""
    tag, x, y = statement
    if tag == "all":
        return not any(x in r and y not in r for r in regions)
    if tag == "no":
        return not any(x in r and y in r for r in regions)
    if tag == "some":
        return any(x in r and y in r for r in regions)
    return any(x in r and y not in r for r in regions)  # some_not


def _holds_order(statement: Statement, order: tuple[str, ...]) -> bool:
    return order.index(statement[1]) < order.index(statement[2])


def _models(kind: str, statements: list[Statement]) -> Iterator[Callable[[Statement], bool]]:
    if kind == "conditional":
        names = sorted(set().union(*(_atoms(s) for s in statements)))
        for values in itertools.product([False, True], repeat=len(names)):
            world = dict(zip(names, values))
            yield lambda s, world=world: _holds_prop(s, world)
    elif kind == "syllogism":
        terms = sorted({t for s in statements for t in s[1:]})
        patterns = [frozenset(t for t, bit in zip(terms, bits) if bit) for bits in itertools.product([0, 1], repeat=len(terms))]
        for mask in range(2 ** len(patterns)):
            regions = frozenset(p for i, p in enumerate(patterns) if mask >> i & 1)
            yield lambda s, regions=regions: _holds_category(s, regions)
    else:
        people = sorted({p for s in statements for p in s[1:]})
        for order in itertools.permutations(people):
            yield lambda s, order=order: _holds_order(s, order)


def entails(kind: str, premises: list[Statement], statement: Statement) -> bool:
    """True if `statement` holds in every model where all premises hold."""
    return all(holds(statement) for holds in _models(kind, premises + [statement])
               if all(holds(p) for p in premises))


# --------------------------------------------------------------------------- text

def _clause(statement: Statement, clauses: dict[str, tuple[str, str]]) -> str:
    if statement[0] == "atom":
        return clauses[statement[1]][0]
    return clauses[statement[1][1]][1]  # ("not", ("atom", p))


def render(statement: Statement, clauses: dict[str, tuple[str, str]], rng: random.Random | None = None) -> str:
    """One sentence; with `rng`, comparisons are sometimes phrased the other way round (premises only)."""
    tag = statement[0]
    if tag in ("atom", "not"):
        text = _clause(statement, clauses)
    elif tag == "if":
        text = f"if {_clause(statement[1], clauses)}, then {_clause(statement[2], clauses)}"
    elif tag == "all":
        text = f"all {statement[1]} are {statement[2]}"
    elif tag == "no":
        text = f"no {statement[1]} are {statement[2]}"
    elif tag == "some":
        text = f"some {statement[1]} are {statement[2]}"
    elif tag == "some_not":
        text = f"some {statement[1]} are not {statement[2]}"
    elif rng is not None and rng.random() < 0.5:
        text = f"{statement[2]} is shorter than {statement[1]}"
    else:
        text = f"{statement[1]} is taller than {statement[2]}"
    return text[0].upper() + text[1:] + "."


# --------------------------------------------------------------------------- generators

def _neg(statement: Statement) -> Statement:
    return statement[1] if statement[0] == "not" else ("not", statement)


def _conditional(rng: random.Random) -> tuple[list[Statement], Statement, list[Statement]]:
    length = rng.randint(3, 4)
    names = [f"p{i}" for i in range(length + 1)]
    chain = [("atom", name) for name in names[:length]]
    extra = ("atom", names[length])  # not in any premise: anything about it is undetermined
    first, last = chain[0], chain[-1]
    premises = [("if", a, b) for a, b in zip(chain, chain[1:])]
    variant = rng.choice(["chain", "ponens", "tollens", "deny", "affirm"])
    inference_errors = [("if", last, first), ("if", _neg(first), _neg(last)), ("if", chain[1], first), extra]
    if variant == "chain":
        answer = ("if", first, last)
    elif variant == "ponens":
        premises.append(first)
        answer = last
        inference_errors += [_neg(last), _neg(chain[1])]
    elif variant == "tollens":
        premises.append(_neg(last))
        answer = _neg(first)
        inference_errors += [first, last]
    elif variant == "deny":  # denying the antecedent is the trap
        premises.append(_neg(first))
        answer = ("if", first, last)
        inference_errors += [_neg(last), _neg(chain[1])]
    else:  # affirming the consequent is the trap
        premises.append(last)
        answer = ("if", first, last)
        inference_errors += [first, chain[1]]
    return premises, answer, inference_errors


_MOODS = {
    "barbara": ([("all", "A", "B"), ("all", "B", "C")], ("all", "A", "C"),
                [("all", "C", "A"), ("all", "B", "A"), ("some", "C", "A"), ("no", "A", "C"), ("all", "C", "B")]),
    "celarent": ([("all", "A", "B"), ("no", "B", "C")], ("no", "A", "C"),
                 [("some", "A", "C"), ("all", "C", "A"), ("all", "B", "A"), ("some_not", "C", "A"), ("all", "A", "C")]),
    "darii": ([("some", "A", "B"), ("all", "B", "C")], ("some", "A", "C"),
              [("all", "A", "C"), ("all", "C", "A"), ("no", "A", "C"), ("some_not", "A", "C"), ("all", "C", "B")]),
    "ferio": ([("some", "A", "B"), ("no", "B", "C")], ("some_not", "A", "C"),
              [("no", "A", "C"), ("some", "A", "C"), ("all", "C", "A"), ("some_not", "C", "A"), ("all", "A", "B")]),
}


def _syllogism(rng: random.Random) -> tuple[list[Statement], Statement, list[Statement]]:
    premises, answer, errors = _MOODS[rng.choice(sorted(_MOODS))]
    terms = dict(zip("ABC", rng.sample(CATEGORIES, 3)))
    name = lambda s: (s[0], terms[s[1]], terms[s[2]])  # noqa: E731
    return [name(p) for p in premises], name(answer), [name(e) for e in errors]


def _ordering(rng: random.Random) -> tuple[list[Statement], Statement, list[Statement]]:
    while True:
        order = rng.sample(PEOPLE, rng.randint(4, 5))
        edges = {(rng.randrange(position), position) for position in range(1, len(order))}
        if rng.random() < 0.5:  # sometimes one redundant-looking extra comparison
            i, j = sorted(rng.sample(range(len(order)), 2))
            edges.add((i, j))
        premises = [("taller", order[i], order[j]) for i, j in sorted(edges)]
        pairs = [("taller", order[i], order[j]) for i, j in itertools.combinations(range(len(order)), 2)]
        implied = [p for p in pairs if p not in premises and entails("ordering", premises, p)]
        if implied:
            answer = rng.choice(implied)
            errors = [("taller", b, a) for _, a, b in pairs] + [p for p in pairs if not entails("ordering", premises, p)]
            return premises, answer, errors


_GENERATORS = {"conditional": _conditional, "syllogism": _syllogism, "ordering": _ordering}


def logical_problem(rng: random.Random, kind: str) -> tuple[list[Statement], Statement, list[Statement], dict]:
    """(premises, answer, three distractors that do not follow, clause texts); answer checked to follow."""
    while True:
        premises, answer, errors = _GENERATORS[kind](rng)
        clauses = {}
        if kind == "conditional":
            names = sorted(set().union(*(_atoms(s) for s in premises + [answer] + errors)))
            clauses = dict(zip(names, rng.sample(CLAUSES, len(names))))
        wrong = list(dict.fromkeys(e for e in errors if e != answer and not entails(kind, premises, e)))
        if entails(kind, premises, answer) and len(wrong) >= N_OPTIONS - 1:
            rng.shuffle(premises)
            return premises, answer, rng.sample(wrong, N_OPTIONS - 1), clauses


def _question(premises: list[Statement], clauses: dict, rng: random.Random) -> str:
    return " ".join(render(p, clauses, rng) for p in premises) + " " + QUESTION


def logical_item(rng: random.Random, kind: str, shots: int = N_SHOTS) -> MCItem:
    demonstrations = []
    for _ in range(shots):
        demo_premises, demo_answer, _, demo_clauses = logical_problem(rng, rng.choice(KINDS))
        demonstrations.append((_question(demo_premises, demo_clauses, rng), render(demo_answer, demo_clauses)))
    premises, answer, wrong, clauses = logical_problem(rng, kind)
    options, true_index = shuffled_candidates(answer, wrong, rng)
    return MCItem(prompt=qa_prompt(demonstrations, _question(premises, clauses, rng)),
                  candidates=[" " + render(option, clauses) for option in options], correct=[true_index],
                  meta={"subtask": kind, "language": "en", "premises": premises, "options": options})


def logical_items(per_kind: int, seed: int = 0, kinds: list[str] | None = None) -> list[MCItem]:
    """`per_kind` problems of each kind, kinds interleaved; deterministic by seed."""
    rng = random.Random(seed)
    return interleave([[logical_item(rng, kind) for _ in range(per_kind)] for kind in kinds or KINDS])


# --------------------------------------------------------------------------- ReClor


RECLOR_COLUMNS = ["context", "question", "answers", "label"]


def _reclor_row(record: dict[str, Any]) -> tuple[str, list[str], int]:
    """(context and question, the 4 answers, the label); an unlabelled or malformed record raises `RowProblem`."""
    context, question = text(record, "context"), text(record, "question")
    answers = string_list(record, "answers")
    if len(answers) != N_OPTIONS:
        raise RowProblem(f"expected {N_OPTIONS} non-empty answer strings, got {len(answers)}", "answers")
    if record.get("label") is None:
        raise RowProblem("no label (an unlabelled test split cannot be scored)", "label")
    label = integer(record, "label")
    if not 0 <= label < N_OPTIONS:
        raise RowProblem(f"label {label!r} is not an index 0-{N_OPTIONS - 1}", "label")
    return f"{context} {question}", answers, label


def load_reclor_json(source: str | Path | Rows, limit: int | None = None, seed: int = 0, shots: int = 1) -> LoadedItems:
    """ReClor read unchanged (its JSON files, or the same schema in JSON lines, Parquet or on the hub)."""
    rows = read_rows(source)
    rows.require(RECLOR_COLUMNS[:3])
    log = RowLog(rows)
    records = [record for _, record in log.parse(_reclor_row)]
    items = []
    for (question, answers, label), demos in with_demonstrations(records, random.Random(seed), shots, limit):
        demonstrations = [(q, a[l]) for q, a, l in demos]
        items.append(MCItem(prompt=qa_prompt(demonstrations, question), candidates=[" " + a for a in answers],
                            correct=[label], meta={"subtask": "reclor", "language": "en"}))
    return log.finish(items)
