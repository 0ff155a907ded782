"""Factual knowledge: a fact table written by the project, cloze items, and the LAMA-style TSV loader.

`FACTS` holds 400+ facts over 9 relations (capital, currency, continent, language, city,
landmark, element, author, company). Each `Fact` has a cloze `prompt` that ends right before the
answer ("The capital of France is") and an `answer` without a leading space ("Paris"). Only
facts with one clear answer are in the table (no countries with several official languages, no
transcontinental countries for "continent", no contested capitals, no city names shared by two
countries).

Items (`factual_items`): as in study 1, the true object among about 10 candidates drawn from the
same relation's other objects (fewer where the relation has fewer objects: continents). The
prompt has three demonstrations of the same relation, one per line, then the cloze:

    The capital of Spain is Madrid.
    The capital of Kenya is Nairobi.
    The capital of Peru is Lima.
    The capital of France is

and the candidates are " Paris", " Rome", ... (leading space). Facts are cloze statements, not
questions, so this task uses the statement form of the few-shot layout.

LAMA-style TSV (`load_lama_tsv`): header `Prompt<TAB>Ans<TAB>Candidate Ans<TAB>Subject`; the prompt
holds `<mask>` where the answer goes, candidates are `, `-separated. The text before `<mask>` is
the cloze (what follows the mask cannot be scored left to right and is dropped); the answer is
added to the candidates when the file's list lacks it. A row whose list holds only the answer (a
few dozen of the study's ~3,000), or with no `<mask>`, is skipped with one warning
(`layerprobe.tasks.io`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerprobe.tasks.base import MCItem
from layerprobe.tasks.fewshot import interleave, shuffled_candidates, with_demonstrations
from layerprobe.tasks.io import LoadedItems, RowLog, RowProblem, Rows, read_rows, text

N_CANDIDATES = 10
N_SHOTS = 3


@dataclass(frozen=True)
class Fact:
    relation: str
    subject: str
    answer: str
    prompt: str


# country, capital, currency, continent, official language (None: left out of that relation)
_COUNTRIES: list[tuple[str, str | None, str, str | None, str | None]] = [
    ("France", "Paris", "euro", "Europe", "French"),
    ("Germany", "Berlin", "euro", "Europe", "German"),
    ("Italy", "Rome", "euro", "Europe", "Italian"),
    ("Spain", "Madrid", "euro", "Europe", "Spanish"),
    ("Portugal", "Lisbon", "euro", "Europe", "Portuguese"),
    ("the Netherlands", "Amsterdam", "euro", "Europe", "Dutch"),
    ("Greece", "Athens", "euro", "Europe", "Greek"),
    ("Austria", "Vienna", "euro", "Europe", "German"),
    ("Poland", "Warsaw", "zloty", "Europe", "Polish"),
    ("Sweden", "Stockholm", "krona", "Europe", "Swedish"),
    ("Norway", "Oslo", "krone", "Europe", "Norwegian"),
    ("Denmark", "Copenhagen", "krone", "Europe", "Danish"),
    ("Finland", "Helsinki", "euro", "Europe", None),
    ("Hungary", "Budapest", "forint", "Europe", "Hungarian"),
    ("the Czech Republic", "Prague", "koruna", "Europe", "Czech"),
    ("Romania", "Bucharest", "leu", "Europe", "Romanian"),
    ("Ireland", "Dublin", "euro", "Europe", None),
    ("the United Kingdom", "London", "pound", "Europe", None),
    ("Russia", "Moscow", "ruble", None, "Russian"),
    ("Turkey", "Ankara", "lira", None, "Turkish"),
    ("Ukraine", "Kyiv", "hryvnia", "Europe", "Ukrainian"),
    ("Switzerland", "Bern", "franc", "Europe", None),
    ("Belgium", "Brussels", "euro", "Europe", None),
    ("Iceland", "Reykjavik", "krona", "Europe", "Icelandic"),
    ("Croatia", "Zagreb", "euro", "Europe", "Croatian"),
    ("Serbia", "Belgrade", "dinar", "Europe", "Serbian"),
    ("Bulgaria", "Sofia", "lev", "Europe", "Bulgarian"),
    ("Japan", "Tokyo", "yen", "Asia", "Japanese"),
    ("China", "Beijing", "yuan", "Asia", "Chinese"),
    ("India", "New Delhi", "rupee", "Asia", None),
    ("South Korea", "Seoul", "won", "Asia", "Korean"),
    ("Thailand", "Bangkok", "baht", "Asia", "Thai"),
    ("Vietnam", "Hanoi", "dong", "Asia", "Vietnamese"),
    ("Indonesia", "Jakarta", "rupiah", "Asia", "Indonesian"),
    ("the Philippines", "Manila", "peso", "Asia", None),
    ("Pakistan", "Islamabad", "rupee", "Asia", None),
    ("Iran", "Tehran", "rial", "Asia", "Persian"),
    ("Iraq", "Baghdad", "dinar", "Asia", None),
    ("Saudi Arabia", "Riyadh", "riyal", "Asia", "Arabic"),
    ("Israel", None, "shekel", "Asia", "Hebrew"),
    ("Malaysia", "Kuala Lumpur", "ringgit", "Asia", "Malay"),
    ("Bangladesh", "Dhaka", "taka", "Asia", "Bengali"),
    ("Nepal", "Kathmandu", "rupee", "Asia", "Nepali"),
    ("Mongolia", "Ulaanbaatar", "tugrik", "Asia", "Mongolian"),
    ("Egypt", "Cairo", "pound", "Africa", "Arabic"),
    ("Nigeria", "Abuja", "naira", "Africa", "English"),
    ("Kenya", "Nairobi", "shilling", "Africa", None),
    ("South Africa", None, "rand", "Africa", None),
    ("Ethiopia", "Addis Ababa", "birr", "Africa", "Amharic"),
    ("Morocco", "Rabat", "dirham", "Africa", None),
    ("Ghana", "Accra", "cedi", "Africa", "English"),
    ("Algeria", "Algiers", "dinar", "Africa", None),
    ("Angola", "Luanda", "kwanza", "Africa", "Portuguese"),
    ("Brazil", "Brasília", "real", "South America", "Portuguese"),
    ("Argentina", "Buenos Aires", "peso", "South America", "Spanish"),
    ("Chile", "Santiago", "peso", "South America", "Spanish"),
    ("Peru", "Lima", "sol", "South America", None),
    ("Colombia", "Bogotá", "peso", "South America", "Spanish"),
    ("Venezuela", "Caracas", "bolívar", "South America", "Spanish"),
    ("Mexico", "Mexico City", "peso", "North America", None),
    ("Canada", "Ottawa", "dollar", "North America", None),
    ("the United States", "Washington, D.C.", "dollar", "North America", None),
    ("Cuba", "Havana", "peso", "North America", "Spanish"),
    ("Jamaica", "Kingston", "dollar", "North America", "English"),
    ("Australia", "Canberra", "dollar", None, None),
    ("New Zealand", "Wellington", "dollar", None, None),
]

_CITIES: dict[str, list[str]] = {
    "France": ["Lyon", "Marseille", "Toulouse", "Bordeaux"],
    "Germany": ["Munich", "Hamburg", "Cologne", "Frankfurt"],
    "Italy": ["Milan", "Naples", "Florence", "Venice"],
    "Spain": ["Barcelona", "Seville", "Valencia", "Bilbao"],
    "Portugal": ["Porto"],
    "the Netherlands": ["Rotterdam", "Utrecht"],
    "Poland": ["Kraków", "Gdańsk"],
    "Sweden": ["Gothenburg"],
    "Norway": ["Bergen"],
    "Japan": ["Osaka", "Kyoto", "Hiroshima", "Sapporo"],
    "China": ["Shanghai", "Shenzhen", "Guangzhou", "Chengdu"],
    "India": ["Mumbai", "Bangalore", "Chennai", "Kolkata"],
    "South Korea": ["Busan", "Incheon"],
    "Thailand": ["Chiang Mai", "Phuket"],
    "Vietnam": ["Ho Chi Minh City"],
    "Pakistan": ["Karachi", "Lahore"],
    "Turkey": ["Istanbul", "Izmir"],
    "Egypt": ["Alexandria", "Luxor"],
    "Nigeria": ["Lagos"],
    "Morocco": ["Casablanca", "Marrakesh"],
    "South Africa": ["Cape Town", "Johannesburg", "Durban"],
    "Brazil": ["Rio de Janeiro", "São Paulo", "Salvador"],
    "Colombia": ["Medellín", "Cali"],
    "Mexico": ["Monterrey", "Cancún"],
    "Canada": ["Toronto", "Vancouver", "Montreal", "Calgary"],
    "the United States": ["Chicago", "Los Angeles", "Houston", "Seattle", "Boston"],
    "Australia": ["Sydney", "Melbourne", "Brisbane", "Perth"],
    "New Zealand": ["Auckland", "Christchurch"],
    "Russia": ["Novosibirsk", "Vladivostok"],
    "the United Kingdom": ["Edinburgh", "Manchester", "Liverpool", "Glasgow"],
    "Switzerland": ["Geneva", "Zurich", "Basel"],
    "Belgium": ["Antwerp", "Bruges"],
    "Austria": ["Salzburg", "Innsbruck"],
    "Greece": ["Thessaloniki"],
    "Ukraine": ["Odesa", "Lviv"],
    "the United Arab Emirates": ["Dubai"],
    "Saudi Arabia": ["Jeddah", "Mecca"],
    "Indonesia": ["Surabaya", "Bandung"],
}

_LANDMARKS: list[tuple[str, str]] = [
    ("The Eiffel Tower", "France"), ("The Louvre", "France"), ("The Colosseum", "Italy"),
    ("The Leaning Tower of Pisa", "Italy"), ("Big Ben", "the United Kingdom"), ("Stonehenge", "the United Kingdom"),
    ("The Statue of Liberty", "the United States"), ("The Grand Canyon", "the United States"),
    ("The Golden Gate Bridge", "the United States"), ("The Taj Mahal", "India"), ("The Forbidden City", "China"),
    ("Machu Picchu", "Peru"), ("Christ the Redeemer", "Brazil"), ("The Sydney Opera House", "Australia"),
    ("Uluru", "Australia"), ("The Acropolis", "Greece"), ("The Sagrada Família", "Spain"), ("The Alhambra", "Spain"),
    ("The Kremlin", "Russia"), ("Mount Fuji", "Japan"), ("Angkor Wat", "Cambodia"), ("Petra", "Jordan"),
    ("The Brandenburg Gate", "Germany"), ("Neuschwanstein Castle", "Germany"), ("Chichen Itza", "Mexico"),
    ("Mount Kilimanjaro", "Tanzania"), ("The CN Tower", "Canada"), ("The Burj Khalifa", "the United Arab Emirates"),
    ("The Pyramids of Giza", "Egypt"), ("Table Mountain", "South Africa"), ("The Hagia Sophia", "Turkey"),
]

_ELEMENTS: list[tuple[str, str]] = [
    ("hydrogen", "H"), ("helium", "He"), ("lithium", "Li"), ("carbon", "C"), ("nitrogen", "N"), ("oxygen", "O"),
    ("fluorine", "F"), ("neon", "Ne"), ("sodium", "Na"), ("magnesium", "Mg"), ("aluminium", "Al"),
    ("silicon", "Si"), ("phosphorus", "P"), ("sulfur", "S"), ("chlorine", "Cl"), ("argon", "Ar"),
    ("potassium", "K"), ("calcium", "Ca"), ("titanium", "Ti"), ("chromium", "Cr"), ("iron", "Fe"),
    ("cobalt", "Co"), ("nickel", "Ni"), ("copper", "Cu"), ("zinc", "Zn"), ("silver", "Ag"), ("tin", "Sn"),
    ("iodine", "I"), ("tungsten", "W"), ("platinum", "Pt"), ("gold", "Au"), ("mercury", "Hg"), ("lead", "Pb"),
    ("uranium", "U"),
]

_AUTHORS: list[tuple[str, str]] = [
    ("Hamlet", "William Shakespeare"), ("Macbeth", "William Shakespeare"), ("Romeo and Juliet", "William Shakespeare"),
    ("Pride and Prejudice", "Jane Austen"), ("Sense and Sensibility", "Jane Austen"), ("Nineteen Eighty-Four", "George Orwell"),
    ("Animal Farm", "George Orwell"), ("War and Peace", "Leo Tolstoy"), ("Anna Karenina", "Leo Tolstoy"),
    ("Crime and Punishment", "Fyodor Dostoevsky"), ("The Brothers Karamazov", "Fyodor Dostoevsky"),
    ("Don Quixote", "Miguel de Cervantes"), ("The Odyssey", "Homer"), ("The Iliad", "Homer"),
    ("Moby-Dick", "Herman Melville"), ("Oliver Twist", "Charles Dickens"), ("Great Expectations", "Charles Dickens"),
    ("A Tale of Two Cities", "Charles Dickens"), ("The Great Gatsby", "F. Scott Fitzgerald"),
    ("Les Misérables", "Victor Hugo"), ("The Divine Comedy", "Dante Alighieri"), ("Faust", "Johann Wolfgang von Goethe"),
    ("The Old Man and the Sea", "Ernest Hemingway"), ("Frankenstein", "Mary Shelley"), ("Dracula", "Bram Stoker"),
    ("Adventures of Huckleberry Finn", "Mark Twain"), ("The Adventures of Tom Sawyer", "Mark Twain"),
    ("One Hundred Years of Solitude", "Gabriel García Márquez"), ("Madame Bovary", "Gustave Flaubert"),
    ("Jane Eyre", "Charlotte Brontë"), ("Wuthering Heights", "Emily Brontë"), ("The Catcher in the Rye", "J. D. Salinger"),
    ("To Kill a Mockingbird", "Harper Lee"), ("Brave New World", "Aldous Huxley"), ("The Hobbit", "J. R. R. Tolkien"),
    ("The Lord of the Rings", "J. R. R. Tolkien"), ("Alice's Adventures in Wonderland", "Lewis Carroll"),
    ("The Metamorphosis", "Franz Kafka"), ("The Trial", "Franz Kafka"),
]

_COMPANIES: list[tuple[str, str]] = [
    ("Toyota", "Japan"), ("Sony", "Japan"), ("Honda", "Japan"), ("Nintendo", "Japan"), ("Samsung", "South Korea"),
    ("Hyundai", "South Korea"), ("Volkswagen", "Germany"), ("BMW", "Germany"), ("Siemens", "Germany"),
    ("Adidas", "Germany"), ("Nestlé", "Switzerland"), ("Rolex", "Switzerland"), ("Volvo", "Sweden"),
    ("Ericsson", "Sweden"), ("Nokia", "Finland"), ("Philips", "the Netherlands"), ("Heineken", "the Netherlands"),
    ("Fiat", "Italy"), ("Ferrari", "Italy"), ("Renault", "France"), ("Peugeot", "France"), ("Michelin", "France"),
    ("Boeing", "the United States"), ("Microsoft", "the United States"), ("Coca-Cola", "the United States"),
    ("Ford", "the United States"), ("Huawei", "China"), ("Alibaba", "China"), ("Tata", "India"), ("Infosys", "India"),
    ("Embraer", "Brazil"), ("Petrobras", "Brazil"), ("Lego", "Denmark"), ("Carlsberg", "Denmark"),
    ("Inditex", "Spain"), ("Tesco", "the United Kingdom"), ("Rolls-Royce", "the United Kingdom"),
]

# relation -> cloze template over the subject
TEMPLATES: dict[str, str] = {
    "capital": "The capital of {} is",
    "currency": "The official currency of {} is the",
    "continent": "{} is a country in the continent of",
    "language": "The official language of {} is",
    "city": "The city of {} is located in",
    "landmark": "{} is located in",
    "element": "The chemical symbol of {} is",
    "author": "{} was written by",
    "company": "{} is a company based in",
}


def _capitalised(subject: str) -> str:
    return subject[0].upper() + subject[1:]


def _build_facts() -> list[Fact]:
    pairs: list[tuple[str, str, str]] = []  # (relation, subject, answer)
    for country, capital, currency, continent, language in _COUNTRIES:
        for relation, answer in (("capital", capital), ("currency", currency), ("continent", continent),
                                 ("language", language)):
            if answer is not None:
                pairs.append((relation, country, answer))
    pairs += [("city", city, country) for country, cities in _CITIES.items() for city in cities]
    pairs += [("landmark", landmark, country) for landmark, country in _LANDMARKS]
    pairs += [("element", element, symbol) for element, symbol in _ELEMENTS]
    pairs += [("author", work, author) for work, author in _AUTHORS]
    pairs += [("company", company, country) for company, country in _COMPANIES]
    facts = []
    for relation, subject, answer in pairs:
        prompt = TEMPLATES[relation].format(subject)
        facts.append(Fact(relation, subject, answer, _capitalised(prompt)))
    return facts


FACTS: list[Fact] = _build_facts()
RELATIONS: list[str] = list(TEMPLATES)


def objects_of(relation: str) -> list[str]:
    """The distinct answers of a relation, in table order (the candidate pool for its items)."""
    return list(dict.fromkeys(fact.answer for fact in FACTS if fact.relation == relation))


def cloze_item(fact: Fact, demonstrations: list[Fact], false: list[str], rng: random.Random) -> MCItem:
    """The demonstrations as completed statements, one a line, then the fact's cloze; candidates spaced."""
    candidates, true_index = shuffled_candidates(fact.answer, false, rng)
    context = "".join(f"{demo.prompt} {demo.answer}.\n" for demo in demonstrations)
    return MCItem(prompt=context + fact.prompt, candidates=[" " + c for c in candidates], correct=[true_index],
                  meta={"subtask": fact.relation, "language": "en", "subject": fact.subject})


def _demonstrations(fact: Fact, pool: list[Fact], rng: random.Random, shots: int) -> list[Fact]:
    """Other facts of the relation whose answer differs, so no demonstration gives the answer away."""
    others = [f for f in pool if f.relation == fact.relation and f.subject != fact.subject and f.answer != fact.answer]
    return rng.sample(others, min(shots, len(others)))


def fact_item(fact: Fact, rng: random.Random, n_candidates: int = N_CANDIDATES, shots: int = N_SHOTS) -> MCItem:
    """One cloze item over the built-in table: the true object among the relation's other objects."""
    demonstrations = _demonstrations(fact, FACTS, rng, shots)
    objects = [answer for answer in objects_of(fact.relation) if answer != fact.answer]
    false = rng.sample(objects, min(n_candidates - 1, len(objects)))
    return cloze_item(fact, demonstrations, false, rng)


def factual_items(limit: int | None = None, seed: int = 0, n_candidates: int = N_CANDIDATES,
                  shots: int = N_SHOTS) -> list[MCItem]:
    """Items over the built-in table, relations interleaved so any `limit` covers them all evenly."""
    rng = random.Random(seed)
    by_relation = []
    for relation in RELATIONS:
        facts = [fact for fact in FACTS if fact.relation == relation]
        rng.shuffle(facts)
        by_relation.append(facts)
    chosen = interleave(by_relation)[:limit]
    return [fact_item(fact, rng, n_candidates, shots) for fact in chosen]


LAMA_COLUMNS = ["Prompt", "Ans", "Candidate Ans", "Subject"]


def _lama_row(row: dict[str, Any]) -> tuple[Fact, list[str]]:
    """(the cloze fact, its candidates with the answer first); a row that cannot be scored raises `RowProblem`."""
    prompt = text(row, "Prompt")
    if "<mask>" not in prompt:
        raise RowProblem("prompt has no <mask>", "Prompt")
    cloze = prompt.split("<mask>", 1)[0].rstrip()
    if not cloze:
        raise RowProblem("nothing before <mask> to condition on", "Prompt")
    answer = text(row, "Ans")
    candidates = [c.strip() for c in (row.get("Candidate Ans") or "").split(", ") if c.strip()]
    false = [c for c in dict.fromkeys(candidates) if c != answer]
    if not false:
        raise RowProblem("the candidate list holds only the answer", "Candidate Ans")
    subject = (row.get("Subject") or "").strip() or cloze
    return Fact("lama", subject, answer, cloze), false


def load_lama_tsv(source: str | Path | Rows, limit: int | None = None, seed: int = 0,
                  shots: int = N_SHOTS) -> LoadedItems:
    """Items from a LAMA-style TSV; demonstrations are drawn from the file's other rows."""
    rows = read_rows(source)
    rows.require(LAMA_COLUMNS[:3])
    log = RowLog(rows)
    records = [record for _, record in log.parse(_lama_row)]
    rng = random.Random(seed)
    items = []
    for (fact, false), demos in with_demonstrations(records, rng, shots, limit, lambda r, o: o[0].answer != r[0].answer):
        items.append(cloze_item(fact, [demo for demo, _ in demos], false, rng))
    return log.finish(items)
