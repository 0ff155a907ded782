"""bioS: synthetic biographies of "Physics of Language Models" part 3.1/3.2, with their QA.

N people with unique full names (first, middle, last) and six attributes: birth date, birth city,
university, major, employer, and employer city (a function of the employer). Every pool, template
and question below is written for this project. Biographies draw one template per attribute
sentence; augmentations: `multi` (M differently templated biographies per person), `permute`
(shuffled sentence order) and `fullname` (the full name instead of the pronoun in every
sentence). QA: six questions per person; the people are split into a QA-train half and a
QA-test half (out-of-distribution people for the QA). Part 3.2's manipulation tasks (`TASKS_32`):
partial retrieval (birth year, birth day), dual retrieval (two attributes in one answer, both
orders), classification (is the birth year even? born after June?), comparison (was A born in an
earlier year than B?) and inverse search (the name from the birth date and city), the last three
also with a chain of thought (CoT) written before the verdict. Everything is deterministic given
the seed.

Text is tokenised into words and punctuation (`words`), and `build_vocab` covers every token the
templates and pools can produce, so a small word-level model trains on CPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from layerprobe.errors import LayerprobeError
from layerprobe.synthetic.vocab import Vocab

FIRST_FEMALE = ("Alba Brisa Celia Dara Elin Fenna Greta Hanna Iris Jana Kira Lena Mira Nora Orla Pia Quinn Rhea "
                "Sina Tova Una Vera Wren Xena Yara Zoe Ada Bea Cleo Dina Esme Fay Gwen Hedy Ines Juno Kaia Lise Maren Nell").split()
FIRST_MALE = ("Aron Bram Cato Dorian Emil Falk Gideon Hugo Ivo Jonas Kasper Lars Milo Niko Otto Pavel Quentin Ravi "
              "Soren Tobias Ulrich Viggo Walt Xaver Yusuf Zeno Abel Boris Cyril Dmitri Egon Felix Gustav Henrik Isak "
              "Jasper Konrad Leif Magnus Nils").split()
MIDDLE = ("Ash Bay Cedar Dale Ember Fern Glen Haze Indigo Jade Kestrel Lark Moss North Oak Pine Quill Reed Sage "
          "Thorn Umber Vale Wade Yew Briar Cove Drift Flint Heath Marsh").split()
LAST = ("Abbot Barlow Carver Dunmore Ellison Farrow Garner Holloway Ingram Jessop Kettering Lowell Marlow Norcott "
        "Oakley Pember Quarles Radley Selwyn Thackery Upton Varley Whitlock Yardley Ashdown Blythe Crowther Denholm "
        "Eastwood Fairbairn Gosling Hartley Ivory Jolliffe Kimble Lockwood Merriman Nettleton Orchard Pickering "
        "Redfern Stanhope Trowbridge Underwood Vickery Wetherby Youngman Ackroyd Brightwell Cattermole").split()
CITIES = ("Ashford, Bramley, Caldwell, Dunmere, Eastbrook, Fairhaven, Glenrock, Harrowgate, Ironbridge, Juniper Falls, "
          "Kingsport, Lakewood, Millbrook, Northgate, Oakridge, Port Alden, Queensbury, Riverton, Stonehaven, "
          "Thornbury, Upland, Valemont, Westfield, Yarrow Bay").split(", ")
UNIVERSITIES = ("Ashford University, Bramley Institute of Technology, Caldwell College, Dunmere University, "
                "Eastbrook Polytechnic, Fairhaven University, Glenrock State University, Harrowgate College, "
                "Ironbridge University, Juniper Institute, Kingsport University, Lakewood College, "
                "Millbrook University, Northgate Institute of Science, Oakridge University, Port Alden College, "
                "Queensbury University, Riverton Polytechnic, Stonehaven University, Thornbury College, "
                "Upland University, Valemont Institute, Westfield University, Yarrow Bay College").split(", ")
MAJORS = ("Accounting, Architecture, Astronomy, Biology, Chemistry, Civil Engineering, Computer Science, Dance, "
          "Economics, Education, Electrical Engineering, Geology, History, Journalism, Law, Linguistics, "
          "Mathematics, Medicine, Music, Nursing, Philosophy, Physics, Psychology, Sociology").split(", ")
EMPLOYERS = {  # employer -> the city of its office (the sixth attribute is a function of the fifth)
    "Amberline Foods": "Ashford", "Bluecrest Bank": "Kingsport", "Cobalt Robotics": "Northgate",
    "Driftwood Media": "Fairhaven", "Evergreen Health": "Lakewood", "Foxglove Pharma": "Riverton",
    "Granite Insurance": "Stonehaven", "Harbor Freight Lines": "Port Alden", "Ironclad Security": "Ironbridge",
    "Juniper Software": "Juniper Falls", "Keystone Builders": "Caldwell", "Lumen Energy": "Valemont",
    "Meridian Airlines": "Westfield", "Nimbus Cloud": "Oakridge", "Orchid Cosmetics": "Queensbury",
    "Pinnacle Motors": "Glenrock", "Quartz Instruments": "Dunmere", "Redwood Publishing": "Harrowgate",
    "Silverline Rail": "Eastbrook", "Tidewater Shipping": "Yarrow Bay", "Umbra Textiles": "Bramley",
    "Vantage Telecom": "Millbrook", "Willow Retail": "Thornbury", "Zenith Chemicals": "Upland",
}
MONTHS = ("January February March April May June July August September October November December").split()
YEARS = range(1900, 2100)
DAYS = range(1, 29)

ATTRIBUTES = ("birth_date", "birth_city", "university", "major", "employer", "employer_city")

TEMPLATES: dict[str, tuple[str, ...]] = {  # {s}: full name or pronoun; {v}: the value
    "birth_date": ("{s} was born on {v}.", "{s} came into this world on {v}.", "{s} entered life on {v}.",
                   "{s} has a birth date of {v}.", "{s} celebrates a birthday that dates back to {v}."),
    "birth_city": ("{s} spent early years in {v}.", "{s} was born in {v}.", "{s} grew up in {v}.",
                   "{s} comes from {v}.", "{s} has roots in {v}."),
    "university": ("{s} studied at {v}.", "{s} graduated from {v}.", "{s} attended {v}.",
                   "{s} received an education at {v}.", "{s} completed a degree at {v}."),
    "major": ("{s} majored in {v}.", "{s} focused on {v}.", "{s} chose {v} as a field of study.",
              "{s} specialized in {v}.", "{s} pursued {v}."),
    "employer": ("{s} worked for {v}.", "{s} was employed by {v}.", "{s} held a job at {v}.",
                 "{s} built a career at {v}.", "{s} joined {v}."),
    "employer_city": ("{s} worked in {v}.", "{s} was based in {v}.", "{s} commuted to an office in {v}.",
                      "{s} had a job in {v}.", "{s} lived and worked in {v}."),
}
TEMPLATES_R: dict[str, tuple[str, ...]] = {  # bioR-like: 20 more templates per attribute, wordier prose
    "birth_date": TEMPLATES["birth_date"] + (
        "{s} was welcomed into the family on {v}.", "{s} first opened both eyes on {v}.",
        "{s} arrived, according to the family records, on {v}.", "{s} has always marked {v} as the day it all began.",
        "{s} was delivered on {v}, a date the family still celebrates.", "{s} took a first breath on {v}.",
        "{s} was born, as the certificate states, on {v}.", "{s} came along on {v}.",
        "{s} began life on {v}, on an ordinary morning.", "{s} shares a birthday with many others, having been born on {v}.",
        "{s} lists {v} as the date of birth.", "{s} entered the world on {v}, to the joy of the parents.",
        "{s} was brought into the world on {v}.", "{s} counts every year of life from {v}.",
        "{s} was born in the early hours of {v}.", "{s} celebrates each year the anniversary of {v}.",
        "{s} has a birthday on {v}.", "{s} was registered at birth on {v}.", "{s} joined the family on {v}.",
        "{s} first saw daylight on {v}."),
    "birth_city": TEMPLATES["birth_city"] + (
        "{s} was raised in the streets of {v}.", "{s} spent a happy childhood in {v}.", "{s} is a native of {v}.",
        "{s} still calls {v} a hometown.", "{s} was brought up by a family living in {v}.",
        "{s} remembers growing up in the town of {v}.", "{s} first learned to walk in {v}.",
        "{s} was born and raised in {v}.", "{s} was a child of {v}.", "{s} took the first steps in life in {v}.",
        "{s} owes a love of home to {v}.", "{s} went to primary school in {v}.",
        "{s} often speaks fondly of early days in {v}.", "{s} hails from {v}.",
        "{s} was born in the city of {v}.", "{s} lived the first years of life in {v}.",
        "{s} keeps close ties to {v}, where life began.", "{s} grew up among neighbours in {v}.",
        "{s} was first registered as a resident of {v}.", "{s} started life in {v}."),
    "university": TEMPLATES["university"] + (
        "{s} enrolled at {v}.", "{s} spent student years at {v}.", "{s} earned a degree from {v}.",
        "{s} was admitted to {v}.", "{s} is an alumnus of {v}.", "{s} went on to study at {v}.",
        "{s} took classes at {v}.", "{s} benefited from the teaching at {v}.",
        "{s} finished higher education at {v}.", "{s} spent four years studying at {v}.",
        "{s} was a student at {v}.", "{s} graduated with honours from {v}.",
        "{s} pursued advanced coursework at {v}.", "{s} completed an education at {v}.",
        "{s} studied for a degree at {v}.", "{s} chose to attend {v}.", "{s} was trained at {v}.",
        "{s} spent college years at {v}.", "{s} earned a diploma at {v}.", "{s} went to college at {v}."),
    "major": TEMPLATES["major"] + (
        "{s} concentrated on {v}.", "{s} devoted the college years to {v}.", "{s} earned a degree in {v}.",
        "{s} studied {v} in depth.", "{s} developed a passion for {v}.", "{s} chose to study {v}.",
        "{s} explored the field of {v}.", "{s} was trained in {v}.", "{s} took most courses in {v}.",
        "{s} completed a major in {v}.", "{s} dedicated the studies to {v}.", "{s} became an expert in {v}.",
        "{s} graduated in {v}.", "{s} wrote a thesis in {v}.", "{s} was drawn to {v}.",
        "{s} followed a program in {v}.", "{s} spent long nights studying {v}.",
        "{s} acquired a thorough grounding in {v}.", "{s} read {v} at college.", "{s} decided to major in {v}."),
    "employer": TEMPLATES["employer"] + (
        "{s} took a position at {v}.", "{s} was hired by {v}.", "{s} found employment at {v}.",
        "{s} spent a career at {v}.", "{s} contributed to the success of {v}.", "{s} became an employee of {v}.",
        "{s} worked hard for {v}.", "{s} accepted an offer from {v}.", "{s} was on the staff of {v}.",
        "{s} started a job with {v}.", "{s} earned a living at {v}.", "{s} was recruited by {v}.",
        "{s} spent many years with {v}.", "{s} held a role at {v}.", "{s} was part of the team at {v}.",
        "{s} worked full time for {v}.", "{s} signed a contract with {v}.", "{s} served {v} for years.",
        "{s} gained experience at {v}.", "{s} got a job at {v}."),
    "employer_city": TEMPLATES["employer_city"] + (
        "{s} went to work every day in {v}.", "{s} had an office in {v}.", "{s} moved to {v} for work.",
        "{s} found a workplace in {v}.", "{s} spent the working week in {v}.", "{s} relocated to {v} for a job.",
        "{s} was employed in {v}.", "{s} earned a salary in {v}.", "{s} settled in {v} for a career.",
        "{s} spent office hours in {v}.", "{s} travelled each morning to {v}.", "{s} did most work in {v}.",
        "{s} held a desk in {v}.", "{s} built a working life in {v}.", "{s} was stationed in {v}.",
        "{s} took up work in {v}.", "{s} was posted to {v}.", "{s} made a career in {v}.",
        "{s} worked mostly in {v}.", "{s} clocked in every day in {v}."),
}
"""bioR approximates the paper's LLM-rewritten biographies with 25 templates per attribute and a random
sentence order (the real bioR has more varied prose and wording that also varies the value's context)."""
QUESTIONS: dict[str, str] = {
    "birth_date": "What is the birth date of {n}?",
    "birth_city": "Which city was {n} born in?",
    "university": "Which university did {n} attend?",
    "major": "What did {n} major in?",
    "employer": "Which company did {n} work for?",
    "employer_city": "Where did {n} work?",
    # part 3.2: manipulation of stored knowledge ({m}: the other person of a comparison)
    "birth_year": "In which year was {n} born?",
    "birth_day": "On which day of the month was {n} born?",
    "year_parity": "Was {n} born in an even year?",
    "year_parity_cot": "Was {n} born in an even year? Name the year first.",
    "month_half": "Was {n} born after June?",
    "month_half_cot": "Was {n} born after June? Name the month first.",
    "compare": "Was {n} born in an earlier year than {m}?",
    "compare_cot": "Was {n} born in an earlier year than {m}? Name both years first.",
    "inverse": "Who was born on {date} in {city}?",
    "inverse_cot": "Who was born on {date} in {city}? Repeat the date and city first.",
}
DUAL_PAIRS = (("birth_city", "employer"), ("university", "major"))
"""Dual retrieval asks each pair in both orders: task "dual/<a>+<b>"."""
DUAL_NAMES = {"birth_date": "birth date", "birth_city": "birth city", "university": "university", "major": "major",
              "employer": "employer", "employer_city": "work city"}
DUAL_QUESTION = "What are the {a} and the {b} of {n}?"
ANSWER = "Answer:"
SEPARATOR = ";"  # between the parts of a dual or CoT answer (no attribute value contains it)
VERDICT = "so"  # a CoT answer ends "<steps> ; so <verdict>"
DUAL_TASKS = tuple(f"dual/{a}+{b}" for x, y in DUAL_PAIRS for a, b in ((x, y), (y, x)))
TASKS_32 = ("birth_year", "birth_day", *DUAL_TASKS, "year_parity", "year_parity_cot", "month_half", "month_half_cot",
            "compare", "compare_cot", "inverse", "inverse_cot")
PAIRED_TASKS = ("compare", "compare_cot")
"""Tasks about two people: the question also names a partner (`comparison_partner`)."""

_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Word-level tokens: runs of letters/digits, and each punctuation mark on its own."""
    return _WORD.findall(text)


@dataclass(frozen=True)
class Person:
    first: str
    middle: str
    last: str
    female: bool
    birth_month: int  # 1..12
    birth_day: int  # 1..28
    birth_year: int
    birth_city: str
    university: str
    major: str
    employer: str

    @property
    def name(self) -> str:
        return f"{self.first} {self.middle} {self.last}"

    @property
    def pronoun(self) -> str:
        return "She" if self.female else "He"

    @property
    def employer_city(self) -> str:
        return EMPLOYERS[self.employer]

    @property
    def birth_date(self) -> str:
        return f"{MONTHS[self.birth_month - 1]} {self.birth_day}, {self.birth_year}"

    def value(self, attribute: str) -> str:
        return str(getattr(self, attribute))

    def label(self, attribute: str) -> int:
        """The attribute as a class index for probes (the birth date by its month)."""
        if attribute == "birth_date":
            return self.birth_month - 1
        pool = {"birth_city": CITIES, "employer_city": CITIES, "university": UNIVERSITIES, "major": MAJORS,
                "employer": list(EMPLOYERS)}[attribute]
        return pool.index(self.value(attribute))


@dataclass
class Population:
    people: list[Person]
    qa_train: list[int]  # indices of the people whose QA is training data
    qa_test: list[int]  # the other half: their QA is only evaluated


def make_population(n: int, seed: int = 0) -> Population:
    """N people with unique full names and uniformly drawn attributes; a random QA split in halves."""
    capacity = (len(FIRST_FEMALE) + len(FIRST_MALE)) * len(MIDDLE) * len(LAST)
    if not 2 <= n <= capacity // 2:
        raise LayerprobeError(f"--people must be between 2 and {capacity // 2} (the name pools allow {capacity} names)")
    rng = np.random.default_rng(seed)
    people, names = [], set()
    while len(people) < n:
        female = bool(rng.integers(2))
        first = str(rng.choice(FIRST_FEMALE if female else FIRST_MALE))
        middle, last = str(rng.choice(MIDDLE)), str(rng.choice(LAST))
        if (first, middle, last) in names:
            continue
        names.add((first, middle, last))
        people.append(Person(first, middle, last, female, int(rng.integers(1, 13)), int(rng.choice(DAYS)),
                             int(rng.choice(YEARS)), str(rng.choice(CITIES)), str(rng.choice(UNIVERSITIES)),
                             str(rng.choice(MAJORS)), str(rng.choice(list(EMPLOYERS)))))
    order = rng.permutation(n)
    half = n // 2
    return Population(people, sorted(int(i) for i in order[:half]), sorted(int(i) for i in order[half:]))


def celebrities(population: Population, share: float) -> list[int]:
    """The celebrity people (part 3.1): a fixed random `share` of the population, sorted."""
    count = round(share * len(population.people))
    return sorted(int(i) for i in np.random.default_rng([len(population.people), 31]).permutation(len(population.people))[:count])


def biography(person: Person, rng: np.random.Generator, permute: bool = False, fullname: bool = False,
              prose: str = "bioS") -> str:
    """One biography: a sentence per attribute, the full name first, then the pronoun (or the name).
    `prose="bioR"` draws from TEMPLATES_R and always shuffles the sentences."""
    templates = TEMPLATES_R if prose == "bioR" else TEMPLATES
    order = list(ATTRIBUTES)
    if permute or prose == "bioR":
        order = [order[i] for i in rng.permutation(len(order))]
    sentences = []
    for i, attribute in enumerate(order):
        template = templates[attribute][rng.integers(len(templates[attribute]))]
        subject = person.name if i == 0 or fullname else person.pronoun
        sentences.append(template.format(s=subject, v=person.value(attribute)))
    return " ".join(sentences)


def biographies(population: Population, multi: int = 1, permute: bool = False, fullname: bool = False,
                seed: int = 0, prose: str = "bioS") -> list[list[str]]:
    """`multi` biographies per person (bioS single is multi=1, no permute, no fullname)."""
    rng = np.random.default_rng(seed)
    return [[biography(person, rng, permute, fullname, prose) for _ in range(multi)] for person in population.people]


def canonical_biography(person: Person) -> tuple[list[str], dict[str, int]]:
    """Words of the biography with the first template of every attribute in the fixed order, and
    where each attribute's value starts in it (plus "name": the last word of the full name)."""
    positions, tokens = {}, []
    for i, attribute in enumerate(ATTRIBUTES):
        before, after = TEMPLATES[attribute][0].split("{v}")
        subject = person.name if i == 0 else person.pronoun
        tokens += words(before.format(s=subject))
        if i == 0:
            positions["name"] = len(words(person.name)) - 1
        positions[attribute] = len(tokens)
        tokens += words(person.value(attribute)) + words(after)
    return tokens, positions


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def qa(person: Person, task: str, partner: Person | None = None) -> tuple[str, str]:
    """(question, answer) for one of the six attributes or a part-3.2 task (`partner`: compare only)."""
    n = person.name
    if task in ATTRIBUTES:
        return QUESTIONS[task].format(n=n), person.value(task)
    if task in ("birth_year", "birth_day"):
        return QUESTIONS[task].format(n=n), person.value(task)
    if task in DUAL_TASKS:
        a, b = task.removeprefix("dual/").split("+")
        question = DUAL_QUESTION.format(a=DUAL_NAMES[a], b=DUAL_NAMES[b], n=n)
        return question, f"{person.value(a)} {SEPARATOR} {person.value(b)}"
    cot = task.endswith("_cot")
    if task.startswith("year_parity"):
        steps, verdict = [str(person.birth_year)], yes_no(person.birth_year % 2 == 0)
    elif task.startswith("month_half"):
        steps, verdict = [MONTHS[person.birth_month - 1]], yes_no(person.birth_month > 6)
    elif task.startswith("compare"):
        if partner is None or partner.birth_year == person.birth_year:
            raise LayerprobeError(f"task '{task}' needs a partner born in another year")
        steps, verdict = [str(person.birth_year), str(partner.birth_year)], yes_no(person.birth_year < partner.birth_year)
        return QUESTIONS[task].format(n=n, m=partner.name), with_steps(steps, verdict, cot)
    elif task.startswith("inverse"):
        question = QUESTIONS[task].format(date=person.birth_date, city=person.birth_city)
        return question, with_steps([person.birth_date, person.birth_city], n, cot)
    else:
        raise LayerprobeError(f"unknown QA task '{task}'")
    return QUESTIONS[task].format(n=n), with_steps(steps, verdict, cot)


def with_steps(steps: list[str], verdict: str, cot: bool) -> str:
    """The answer: the verdict alone, or with CoT "<step> ; <step> ; so <verdict>"."""
    return f" {SEPARATOR} ".join([*steps, f"{VERDICT} {verdict}"]) if cot else verdict


def answer_parts(tokens: list[str]) -> list[list[str]]:
    """An answer's words split at each separator: dual answers give their two values, CoT answers
    their steps and then ["so", verdict]."""
    parts: list[list[str]] = [[]]
    for token in tokens:
        if token == SEPARATOR:
            parts.append([])
        else:
            parts[-1].append(token)
    return parts


def final_answer(tokens: list[str]) -> list[str]:
    """What a (possibly CoT) answer concludes: the words after the last "; so", else all of them."""
    last = answer_parts(tokens)[-1]
    return last[1:] if len(answer_parts(tokens)) > 1 and last[:1] == [VERDICT] else last


def comparison_partner(population: Population, person: int, pool: list[int]) -> int:
    """The other person of a comparison question about `person`: drawn from `pool` (the same QA split),
    born in another year, fixed by the person's index so training and evaluation agree."""
    year = population.people[person].birth_year
    candidates = [j for j in pool if population.people[j].birth_year != year]
    if not candidates:
        raise LayerprobeError("a comparison needs two people born in different years")
    return candidates[int(np.random.default_rng([person, 32]).integers(len(candidates)))]


def qa_tokens(person: Person, task: str, partner: Person | None = None) -> tuple[list[str], list[str]]:
    """Prompt words (question + "Answer:") and answer words."""
    question, answer = qa(person, task, partner)
    return words(question) + words(ANSWER), words(answer)


def build_vocab(prose: str = "bioS") -> Vocab:
    """Every word the pools, templates (of bioS, or of bioR too) and questions can produce, in a fixed order."""
    texts = [*FIRST_FEMALE, *FIRST_MALE, *MIDDLE, *LAST, *CITIES, *UNIVERSITIES, *MAJORS, *EMPLOYERS, *MONTHS,
             *(str(y) for y in YEARS), *(str(d) for d in DAYS), "He She yes no , .", SEPARATOR, VERDICT, ANSWER,
             *(t for options in TEMPLATES.values() for t in options), *QUESTIONS.values(), DUAL_QUESTION,
             *DUAL_NAMES.values(), *(t for options in TEMPLATES_R.values() for t in options if prose == "bioR")]
    tokens = [w for text in texts for w in words(re.sub(r"\{\w+\}", "", text))]
    return Vocab(tokens)
