"""iGSM: synthetic grade-school math problems (Physics of Language Models, parts 2.1 and 2.2).

A problem lives in a *structure graph*: layers of items drawn from a category hierarchy (District ->
Supermarket -> Product -> Ingredient), with an edge from an item to items of the next layer. Every
edge (A, B) is a *parameter* "A 's B" (how many B each A has). A *dependency graph* over the
parameters says how each is computed: a constant, a copy, a sum, a difference or a product of at
most `max_operands` earlier parameters, all arithmetic mod a prime (`IGSMConfig.modulus`, the paper's
23) so every value is one token. The
question asks one parameter; the shortest solution defines exactly its ancestors in topological
order ("define A 's B as x ; so x = y + z = 5 + 3 = 8 ."). We know the whole graph, so every
hidden-state probe has exact labels (nece, can_next, dep, value) and `check_solution` grades any
written solution, including a model's, step by step.

Everything is a list of word tokens (names are single tokens) so a small `Vocab` covers the world.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

MOD = 23  # the paper's modulus and the largest one: the vocabulary holds the numbers 0..MOD-1
BACK = "[BACK]"
PROBE = "[PROBE]"  # never in training data: the V-probe's query marker
OPS = ("const", "copy", "sum", "diff", "prod")
OP_SYMBOL = {"sum": "+", "diff": "-", "prod": "*"}
OP_WORD = {"sum": "sum", "diff": "difference", "prod": "product"}
VARIABLES = tuple("abcdefghijklmnopqrstuvwxyz")

HIERARCHIES: tuple[tuple[tuple[str, ...], ...], ...] = (
    (  # District -> Supermarket -> Product -> Ingredient
        ("Riverside", "Hillcrest", "Lakeview", "Oakwood", "Harbor", "Meadow"),
        ("FreshMart", "CornerShop", "GreenGrocer", "ValueStore", "DailyMarket", "FarmStand"),
        ("Bread", "Soup", "Pizza", "Salad", "Pie", "Cereal"),
        ("Flour", "Salt", "Butter", "Tomato", "Onion", "Sugar"),
    ),
    (  # School -> Classroom -> Backpack -> Stationery
        ("NorthHigh", "WestAcademy", "ElmSchool", "PineSchool", "CedarHigh", "BayAcademy"),
        ("ArtRoom", "ScienceLab", "MusicRoom", "Library", "Gym", "MathRoom"),
        ("Daypack", "Satchel", "Rucksack", "Tote", "Duffel", "Sling"),
        ("Pencil", "Eraser", "Ruler", "Marker", "Notebook", "Crayon"),
    ),
    (  # Zoo -> Enclosure -> Animal -> Organ
        ("CityZoo", "SafariPark", "Aquarium", "Aviary", "PettingZoo", "WildPark"),
        ("Savanna", "Jungle", "Arctic", "Desert", "Wetland", "Forest"),
        ("Lion", "Zebra", "Penguin", "Camel", "Otter", "Parrot"),
        ("Heart", "Lung", "Liver", "Kidney", "Brain", "Stomach"),
    ),
)

# Every token a problem, question or solution can contain, besides the names above.
KEYWORDS = ("'s", "equals", "sum", "difference", "product", "of", "and", ",", ".", "question", ":", "how",
            "many", "?", "solution", "define", "as", ";", "so", "=", "+", "-", "*", BACK, PROBE)


@dataclass(frozen=True)
class IGSMConfig:
    """Size of the problems: structure depth and widths, parameter count, operands, difficulty range."""

    depth: tuple[int, int] = (2, 3)  # layers in the structure graph (paper: 2-4)
    width: tuple[int, int] = (2, 3)  # items per layer (paper: 2-4)
    max_params: int = 6  # parameters kept from the structure graph's edges (the rest are not mentioned)
    max_operands: int = 2  # sum / product operands (paper: up to 4)
    ops: tuple[int, int] = (1, 3)  # number of arithmetic operations of the shortest solution
    test_percent: int = 20  # share of solution templates held out for testing
    modulus: int = MOD  # arithmetic mod this prime (<= MOD); small = few arithmetic facts to learn
    ordered_variables: bool = False  # letters a, b, c, ... in solution order (paper: a random letter each)
    max_owners: int = 2  # items of the layer above that own an item (1: an item names its parameter alone)
    short_steps: bool = False  # steps without "; so x": "define A 's B as x = 3 ." (paper: "... as x ; so x = 3 .")
    ordered_operands: bool = False  # a sentence names its operands in solution order, earlier-defined first (paper: any)


PRESETS = {
    # The CPU preset keeps the reasoning (which parameters, in which order, from which operands) and removes two
    # bottlenecks that are not the point at CPU scale: arithmetic mod 5 (25 facts per operation instead of
    # 529, which a small model learns slowly), letters in solution order (no bookkeeping of used letters),
    # and one owner per item, so a parameter's item alone finds its sentence in the problem text (a lookup
    # keyed on two tokens, "A 's B", was the slowest skill to learn); 2-4 items per layer keep the size.
    # Short steps put the parameter's name within a Canon layer's reach (3 tokens) of the "=" after which
    # its value is written, so the value's lookup in the text becomes a one-layer lookup. Operands in solution
    # order: a difference's operand order, read from "of ... and ...", stayed at chance for 16,000 steps
    # (the models find the operands, then write the most recently defined one first).
    "cpu": IGSMConfig(width=(2, 4), modulus=5, ordered_variables=True, max_owners=1, short_steps=True,
                      ordered_operands=True),
    "paper": IGSMConfig(depth=(2, 4), width=(2, 4), max_params=20, max_operands=4, ops=(1, 10)),
}


@dataclass(frozen=True)
class Param:
    """A parameter "A 's B": its tokens, how it is computed and its value mod 23."""

    owner: str
    item: str
    op: str  # one of OPS
    operands: tuple[int, ...]  # indices of the parameters it is computed from (in order)
    value: int

    @property
    def tokens(self) -> list[str]:
        return [self.owner, "'s", self.item]

    @property
    def operations(self) -> int:
        """Arithmetic operations to compute it from its operands (a k-term sum is k - 1)."""
        return max(len(self.operands) - 1, 0)


@dataclass
class Problem:
    """One iGSM problem: parameters in generation (topological) order, the statement order and the query."""

    params: list[Param]
    statement_order: list[int]  # order in which the problem text states the parameters
    query: int
    variables: list[str] = field(default_factory=list)  # letter that the solution uses for each parameter
    short_steps: bool = False  # its solution steps leave out "; so x" (IGSMConfig.short_steps)
    ordered_variables: bool = False  # letters a, b, c, ... in the order a solution defines them

    @property
    def nece(self) -> set[int]:
        """The query and all its ancestors: exactly the parameters a shortest solution defines."""
        needed, stack = set(), [self.query]
        while stack:
            index = stack.pop()
            if index not in needed:
                needed.add(index)
                stack.extend(self.params[index].operands)
        return needed

    @property
    def solution_order(self) -> list[int]:
        """The necessary parameters in topological (generation) order."""
        return sorted(self.nece)

    @property
    def operations(self) -> int:
        """Difficulty: arithmetic operations of the shortest solution."""
        return sum(self.params[i].operations for i in self.nece)

    @property
    def answer(self) -> int:
        return self.params[self.query].value

    def template(self) -> tuple:
        """The solution with names and numbers abstracted away: op and operand step positions per step."""
        order = self.solution_order
        position = {index: step for step, index in enumerate(order)}
        return tuple((self.params[i].op, tuple(position[j] for j in self.params[i].operands)) for i in order)

    def split(self, test_percent: int = 20) -> str:
        """'test' for a fixed share of solution templates (by hash), so test templates are never trained on."""
        digest = hashlib.sha256(repr(self.template()).encode()).digest()
        return "test" if int.from_bytes(digest[:4], "big") % 100 < test_percent else "train"

    def dep(self, a: int, b: int) -> bool:
        """dep(A, B): B is a direct operand of A (an edge of the dependency graph)."""
        return b in self.params[a].operands

    def can_next(self, defined: set[int]) -> list[bool]:
        """Per parameter: not yet defined and every operand already defined (computable now)."""
        return [i not in defined and all(j in defined for j in p.operands) for i, p in enumerate(self.params)]


def _structure_edges(rng: random.Random, config: IGSMConfig) -> list[tuple[str, str]]:
    hierarchy = rng.choice(HIERARCHIES)
    depth = rng.randint(*config.depth)
    start = rng.randint(0, len(hierarchy) - depth)
    layers = [rng.sample(hierarchy[level], rng.randint(*config.width)) for level in range(start, start + depth)]
    edges = []
    for upper, lower in zip(layers, layers[1:]):
        for item in lower:
            for owner in rng.sample(upper, rng.randint(1, min(config.max_owners, len(upper)))):
                edges.append((owner, item))
    rng.shuffle(edges)
    return edges


def _dependency_graph(rng: random.Random, edges: list[tuple[str, str]], config: IGSMConfig) -> list[Param]:
    params: list[Param] = []
    for owner, item in edges:
        earlier = len(params)
        if earlier == 0 or rng.random() < 0.3:
            op, operands = "const", ()
        else:
            op = rng.choice(("copy", "sum", "diff", "prod") if earlier >= 2 else ("copy",))
            count = {"copy": 1, "diff": 2}.get(op) or rng.randint(2, min(config.max_operands, earlier))
            operands = tuple(rng.sample(range(earlier), count))
            if config.ordered_operands:
                operands = tuple(sorted(operands))  # generation order is solution order
        values = [params[j].value for j in operands]
        value = evaluate(op, values, config.modulus) if operands else rng.randrange(config.modulus)
        params.append(Param(owner, item, op, operands, value))
    return params


def evaluate(op: str, values: Sequence[int], modulus: int = MOD) -> int:
    """The value of an operation on operand values, mod `modulus`."""
    if op == "copy":
        return values[0] % modulus
    if op == "sum":
        return sum(values) % modulus
    if op == "diff":
        return (values[0] - values[1]) % modulus
    if op == "prod":
        result = 1
        for value in values:
            result = result * value % modulus
        return result
    raise ValueError(f"unknown operation {op!r}")


def sample_problem(rng: random.Random, config: IGSMConfig = IGSMConfig(), split: str | None = None) -> Problem:
    """Draw a problem whose difficulty is uniform over `config.ops` (and in the given split, if any).

    A 0-operation problem asks for a constant or a copy of one: its solution is a lookup in the text."""
    target = rng.randint(*config.ops)
    while True:
        edges = _structure_edges(rng, config)[: config.max_params]
        if len(edges) < 2:
            continue
        params = _dependency_graph(rng, edges, config)
        order = list(range(len(params)))
        rng.shuffle(order)
        problems = [Problem(params, order, query, []) for query, p in enumerate(params) if p.op != "const" or not target]
        problems = [problem for problem in problems if problem.operations == target]
        if not problems:
            continue
        problem = rng.choice(problems)
        problem.variables = _variables(rng, problem, config.ordered_variables)
        problem.short_steps = config.short_steps
        problem.ordered_variables = config.ordered_variables
        if split is None or problem.split(config.test_percent) == split:
            return problem


def _variables(rng: random.Random, problem: Problem, ordered: bool) -> list[str]:
    """A distinct letter per parameter: random (the paper), or a, b, c, ... in solution order then the rest."""
    if not ordered:
        return rng.sample(VARIABLES, len(problem.params))
    return _letters_in_order(problem, problem.solution_order)


def _letters_in_order(problem: Problem, written: list[int]) -> list[str]:
    """Per parameter, its letter when the solution defines `written` in this order: a, b, c, ..., the rest after."""
    order = written + [i for i in range(len(problem.params)) if i not in written]
    letters = [""] * len(order)
    for letter, index in zip(VARIABLES, order):
        letters[index] = letter
    return letters


def statement_tokens(param: Param, params: Sequence[Param]) -> list[str]:
    """One sentence of the problem text: how a parameter is defined."""
    tokens = param.tokens + ["equals"]
    if param.op == "const":
        return tokens + [str(param.value), "."]
    names = [params[j].tokens for j in param.operands]
    if param.op == "copy":
        return tokens + names[0] + ["."]
    tokens += [OP_WORD[param.op], "of"]
    for position, name in enumerate(names):
        if position:
            tokens.append("and" if position == len(names) - 1 else ",")
        tokens += name
    return tokens + ["."]


def prompt_tokens(problem: Problem) -> list[str]:
    """Problem text, question, and the cue that the solution follows."""
    tokens: list[str] = []
    for index in problem.statement_order:
        tokens += statement_tokens(problem.params[index], problem.params)
    return tokens + ["question", ":", "how", "many"] + problem.params[problem.query].tokens + ["?", "solution", ":"]


def step_tokens(problem: Problem, index: int) -> list[str]:
    """One solution step: "define A 's B as x ; so x = y + z = 5 + 3 = 8 ." (short: "define A 's B as x = y + z
    = 5 + 3 = 8 .")."""
    param, var = problem.params[index], problem.variables[index]
    tokens = ["define"] + param.tokens + ["as", var] + ([] if problem.short_steps else [";", "so", var]) + ["="]
    if param.operands:
        symbol = OP_SYMBOL.get(param.op, "")
        tokens += _joined([problem.variables[j] for j in param.operands], symbol) + ["="]
        if param.op != "copy":
            tokens += _joined([str(problem.params[j].value) for j in param.operands], symbol) + ["="]
    return tokens + [str(param.value), "."]


def _joined(terms: list[str], symbol: str) -> list[str]:
    out: list[str] = []
    for position, term in enumerate(terms):
        out += [symbol, term] if position else [term]
    return out


@dataclass
class WrittenSolution:
    """A solution's tokens plus, per step, where it ends and whether it was a retry (a mistake + [BACK])."""

    tokens: list[str]
    step_ends: list[int]  # index of the last token of each step ("." or [BACK])
    mistakes: list[bool]
    detours: list[bool]  # a correct step of a parameter the answer does not need


def solution_tokens(problem: Problem, rng: random.Random | None = None, retry_p: float = 0.0,
                    detour_p: float = 0.0) -> WrittenSolution:
    """The shortest solution; with `retry_p` > 0, part 2.2's retry data as the paper builds it: before each
    step, with probability retry_p, a *later* step of the solution whose operands are not all computed
    yet is begun too early ("define P as x", with P's own variable), abandoned with [BACK], and the
    solution goes on correctly. A step has no such mistake when every later step is computable.

    With `detour_p` > 0, before each step, with that probability, a *detour*: the correct step of a
    parameter the answer does not need but that is computable then (none if there is no such parameter).
    A detour is valid, so the solution still checks; letters in solution order follow the written order."""
    order = problem.solution_order
    if detour_p > 0 and rng is not None:
        order = _with_detours(problem, order, rng, detour_p)
        problem = _relettered(problem, order)
    nece = problem.nece
    tokens: list[str] = []
    ends: list[int] = []
    mistakes: list[bool] = []
    detours: list[bool] = []
    defined: set[int] = set()
    for position, index in enumerate(order):
        if retry_p > 0 and rng is not None and rng.random() < retry_p:
            computable = problem.can_next(defined)
            blocked = [i for i in order[position + 1:] if i in nece and not computable[i]]
            if blocked:
                wrong = rng.choice(blocked)
                tokens += ["define"] + problem.params[wrong].tokens + ["as", problem.variables[wrong], BACK]
                ends.append(len(tokens) - 1)
                mistakes.append(True)
                detours.append(False)
        tokens += step_tokens(problem, index)
        ends.append(len(tokens) - 1)
        mistakes.append(False)
        detours.append(index not in nece)
        defined.add(index)
    return WrittenSolution(tokens, ends, mistakes, detours)


def _with_detours(problem: Problem, order: list[int], rng: random.Random, detour_p: float) -> list[int]:
    """`order` with, before each step and with probability detour_p, one unneeded parameter computable then."""
    nece = problem.nece
    written: list[int] = []
    for index in order:
        if rng.random() < detour_p:
            ready = [i for i, ok in enumerate(problem.can_next(set(written))) if ok and i not in nece]
            if ready:
                written.append(rng.choice(ready))
        written.append(index)
    return written


def _relettered(problem: Problem, written: list[int]) -> Problem:
    """The problem as a solution that defines `written` in this order letters it (letters in solution order
    follow the written order; random letters stay)."""
    return replace(problem, variables=_letters_in_order(problem, written)) if problem.ordered_variables else problem


def written_steps(problem: Problem, written: Sequence[int]) -> list[str]:
    """The correct steps of the parameters `written`, in this order, lettered as a solution written so would."""
    lettered = _relettered(problem, list(written))
    return [token for index in written for token in step_tokens(lettered, index)]


def detour_prefixes(problem: Problem, rng: random.Random) -> tuple[list[str], list[str]] | None:
    """Two beginnings of a solution: its steps before the query's, and the same plus one *detour*, the correct
    step of a parameter the answer does not need but that is computable there (chosen by `rng`); None when
    there is no such parameter. A model that looks the query's operands up finishes both alike."""
    before = problem.solution_order[:-1]  # the query comes last: its ancestors have lower indices
    ready = [i for i, ok in enumerate(problem.can_next(set(before))) if ok and i not in problem.nece]
    if not ready:
        return None
    return written_steps(problem, before), written_steps(problem, before + [rng.choice(ready)])


def untrained_mask(written: WrittenSolution, mask_mistakes: bool = False, detour_body: bool = False) -> list[bool]:
    """Per token of `written.tokens`: not trained. A detour's tokens are not (it is context, so the model
    learns to go on after an unneeded step without learning to write one); with `detour_body` only its
    parameter's name is not (the choice of an unneeded parameter stays untrained, but the rest of the step,
    its letter, operands and values, is: a model that begins an unneeded step then writes it right). A
    mistake's ("define P as x") with `mask_mistakes`. Each step's last token ("." or [BACK]) stays trained."""
    mask = [False] * len(written.tokens)
    start = 0
    for end, mistake, detour in zip(written.step_ends, written.mistakes, written.detours):
        if detour and detour_body:
            name_end = written.tokens.index("as", start)  # "define A 's B as ...": the name is start+1..name_end
            mask[start + 1:name_end] = [True] * (name_end - start - 1)
        elif detour or (mistake and mask_mistakes):
            mask[start:end] = [True] * (end - start)
        start = end + 1
    return mask


def vocabulary_tokens() -> list[str]:
    """Every token of the world, in a fixed order (for `Vocab`)."""
    names = [name for hierarchy in HIERARCHIES for level in hierarchy for name in level]
    return list(KEYWORDS) + names + list(VARIABLES) + [str(v) for v in range(MOD)]


@dataclass
class Check:
    """The grade of a written solution."""

    correct: bool  # every step valid and the queried parameter defined with its true value
    answer: int | None  # the value written for the queried parameter
    defined: list[int]  # parameters defined, in order
    unnecessary: list[int]  # defined parameters the answer does not need
    retries: int
    error: str | None  # the first problem found, for reading
    premature: bool = False  # the first error names a parameter whose operands are not all defined yet

    @property
    def shortest(self) -> bool:
        """Correct and no unnecessary parameter computed (the paper's level-1 reasoning)."""
        return self.correct and not self.unnecessary


def check_solution(problem: Problem, tokens: Sequence[str]) -> Check:
    """Grade any written solution (e.g. a model's greedy output) step by step against the graph.

    A step is valid when it names a parameter of the problem with a fresh variable, uses the
    parameter's operation on the variables of its operands (any order for sum and product), writes
    the operands' true values and the true result. `[BACK]` abandons the step begun before it.
    """
    lookup = {(p.owner, p.item): i for i, p in enumerate(problem.params)}
    bound: dict[str, int] = {}
    defined: list[int] = []
    answer, error, retries, premature = None, None, 0, False
    steps = _split_steps(list(tokens))
    for number, (step, retried) in enumerate(steps, 1):
        if retried:
            retries += 1
            continue
        problem_found = _check_step(problem, lookup, bound, step)
        if isinstance(problem_found, str):
            error = f"step {number}: {problem_found}"
            premature = _premature(problem, lookup, defined, step)
            break
        index, var = problem_found
        bound[var] = index
        defined.append(index)
        if index == problem.query:
            answer = problem.params[index].value
            break
    if error is None and answer is None:
        error = "the queried parameter is never defined"
    nece = problem.nece
    return Check(error is None, answer, defined, [i for i in defined if i not in nece], retries, error, premature)


def _premature(problem: Problem, lookup: dict, defined: list[int], step: list[str]) -> bool:
    """Whether a wrong step names a parameter of the problem, not defined yet, whose operands are not all
    defined: a step written too early, the mistake part 2.2's retry data teaches a model to undo."""
    index = lookup.get((step[1], step[3])) if len(step) > 3 else None
    return index is not None and index not in defined and not problem.can_next(set(defined))[index]


def step_counts(tokens: Sequence[str]) -> tuple[int, int]:
    """(steps written, of which [BACK]-retries) over a whole written solution, past any error too: the
    part-2.2 measure of how many mistakes (each undone by [BACK]) a model writes."""
    steps = _split_steps(list(tokens))
    return len(steps), sum(retried for _, retried in steps)


def _split_steps(tokens: list[str]) -> list[tuple[list[str], bool]]:
    steps, current = [], []
    for token in tokens:
        if token in (".", BACK):
            steps.append((current, token == BACK))
            current = []
        else:
            current.append(token)
    if current:
        steps.append((current, False))
    return steps


def _check_step(problem: Problem, lookup: dict, bound: dict[str, int], step: list[str]) -> tuple[int, str] | str:
    """(parameter index, variable) of a valid step, or what is wrong with it. A short step ("... as x = ...")
    reads as the long one ("... as x ; so x = ...")."""
    if len(step) > 6 and step[6] == "=":
        step = step[:6] + [";", "so", step[5]] + step[6:]
    if len(step) < 10 or step[0] != "define" or step[2] != "'s" or step[4] != "as" or step[6:9] != [";", "so", step[5]]:
        return f"malformed step {' '.join(step)!r}"
    index = lookup.get((step[1], step[3]))
    if index is None:
        return f"{step[1]} 's {step[3]} is not a parameter of the problem"
    var = step[5]
    if var in bound or var not in VARIABLES:
        return f"variable {var!r} is not fresh"
    param = problem.params[index]
    parts = _split(step[9:], "=")
    if parts is None:
        return "expression does not start with '='"
    expected_parts = 1 if param.op == "const" else 2 if param.op == "copy" else 3
    if len(parts) != expected_parts:
        return f"{param.op} step needs {expected_parts} '=' parts, got {len(parts)}"
    if parts[-1] != [str(param.value)]:
        return f"result {' '.join(parts[-1])!r} is not {param.value}"
    if param.op == "const":
        return index, var
    symbol = OP_SYMBOL.get(param.op)
    names = parts[0] if symbol is None else _terms(parts[0], symbol)
    if names is None or any(name not in bound for name in names):
        return f"operands {' '.join(parts[0])!r} are not defined variables joined by {symbol}"
    used = [bound[name] for name in names]
    same = sorted(used) == sorted(param.operands) if param.op in ("sum", "prod") else tuple(used) == param.operands
    if not same:
        return f"{param.owner} 's {param.item} is not computed from those parameters"
    if param.op != "copy":
        numbers = _terms(parts[1], symbol)
        if numbers != [str(problem.params[j].value) for j in used]:
            return f"operand values {' '.join(parts[1])!r} are wrong"
    return index, var


def _split(tokens: list[str], separator: str) -> list[list[str]] | None:
    """Tokens after a leading separator, cut at each separator: "= a + b = 3" -> [[a, +, b], [3]]."""
    if not tokens or tokens[0] != separator:
        return None
    parts: list[list[str]] = [[]]
    for token in tokens[1:]:
        if token == separator:
            parts.append([])
        else:
            parts[-1].append(token)
    return parts


def _terms(tokens: list[str], symbol: str) -> list[str] | None:
    """["a", "+", "b"] -> ["a", "b"]; None unless terms and symbols alternate."""
    if len(tokens) % 2 == 0 or any(t != symbol for t in tokens[1::2]):
        return None
    return tokens[::2]
