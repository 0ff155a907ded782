"""Layered context-free grammars of "Physics of Language Models" part 1: sampler, labels, checker.

A grammar has levels 0..D: one root symbol at level 0, terminals at level D, and every rule of a
level-k symbol is a sequence of 2-3 level-(k+1) symbols. Because every derivation step goes down
exactly one level, each terminal has one ancestor per level, and the spans of a level tile the
string. Those per-token labels (ancestor symbol and "a span of this level ends here") are the
dynamic-programming states the paper recovers with linear probes.

The published grammars cfg3b/i/h/g/f are built in (`GRAMMARS`); `random_grammar` draws new
ones with the same procedure; `SMALL` is a depth-4 grammar a CPU-trained model learns in minutes.
`Grammar.accepts` is a CYK-style chart parser (span bitsets composed level by level).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from layerprobe.errors import LayerprobeError

# Rules in the papers' notation, symbol ids as published (terminals 1..3, root last).
GRAMMARS: dict[str, str] = {
    "cfg3b": "22->21 20|20 19; 19->16 17 18|17 18 16; 20->17 16 18|16 17; 21->18 16|16 18 17; "
             "16->15 13|13 15 14; 17->14 13 15|15 13 14; 18->15 14 13|14 13; 13->11 12|12 11; "
             "14->11 10 12|10 11 12; 15->12 11 10|11 12 10; 10->7 9 8|9 8 7; 11->8 7 9|7 8 9; "
             "12->8 9 7|9 7 8; 7->3 1|1 2 3; 8->3 2|3 1 2; 9->3 2 1|2 1",
    "cfg3i": "22->19 19 20|21 20 19; 19->18 16 18|16 16; 20->17 16 17|18 18; 21->16 16 18|18 17; "
             "16->13 13|14 14; 17->15 15|15 14; 18->14 15 13|14 15; 13->12 11|10 12 11; "
             "14->10 10 10|10 10; 15->11 11 10|11 10 12; 10->8 7 7|9 9; 11->7 7 7|7 7 8; "
             "12->7 9 9|8 7; 7->3 1 2|2 3 1; 8->1 1|2 2; 9->1 1 3|1 2",
    "cfg3h": "22->20 20 21|19 21; 19->16 17|18 17; 20->18 16|17 16; 21->17 17 18|17 18 17; "
             "16->14 13|15 13; 17->13 14|15 13 15; 18->15 13 13|15 14 14|14 15 15; 13->12 11|11 10; "
             "14->10 12 12|10 10|12 12 10; 15->10 12|11 11 10; 10->8 7 9|9 7|8 8; 11->8 7 7|7 7|7 9 9; "
             "12->7 9|8 7|9 8; 7->2 3 2|1 2 3|1 3 1; 8->1 2|3 3 1|1 3; 9->2 1 3|1 3 3",
    "cfg3g": "22->19 20|20 20 19|20 19 21; 19->17 17 16|18 17 16|18 16 17; 20->16 17|18 18|16 17 17; "
             "21->16 16|16 16 18|18 16; 16->14 13 13|13 14|13 13; 17->14 13 14|14 15 13|15 14; "
             "18->15 13|15 15|14 13 15; 13->10 12|11 11 11|11 11; 14->11 12|10 11 10|10 10; "
             "15->10 11|12 10 10|12 11; 10->8 8 8|7 7 7|7 7; 11->8 8 9|9 7|8 9 7; 12->7 9|7 8|9 9 9; "
             "7->2 3 1|1 1|2 2; 8->1 3 2|1 3|3 3 1; 9->2 3 3|2 3|2 1",
    "cfg3f": "22->20 21|20 19 21|21 19 19|20 20; 19->18 16 18|17 18|18 18; 20->16 16|16 17|17 16 18; "
             "21->18 17|17 16|16 17 18|16 18; 16->15 15|13 15 13|14 13|14 14; 17->15 14 13|14 15|15 14; "
             "18->14 15 13|15 13 13|13 15; 13->11 12|12 11 12|10 12 11; 14->10 12|12 10 12|12 11|10 12 12; "
             "15->10 11 11|11 11 10|10 10|12 12 11; 10->8 9 9|9 7 9|7 9 9; 11->8 8|9 7|9 7 7; "
             "12->7 9 7|9 8|8 8 9; 7->2 2 1|3 2 2|3 1 2|3 2; 8->3 1 1|1 2|3 3 1; 9->1 2 1|3 3|1 1",
    # random_grammar(depth=4, seed=3), frozen: strings of 16-81 terminals, a CPU model learns it in minutes.
    "small": "13->10 12|10 10 11; 10->9 8|8 8; 11->7 9 9|9 7 7; 12->8 9 9|9 7; 7->6 6|4 4; 8->6 5|4 5 4; "
             "9->5 4 4|5 5 4; 4->2 2|3 3 1; 5->2 1 1|3 1; 6->2 1 2|3 2 1",
}


@dataclass
class Sample:
    """One sampled string and its per-token labels (index k = level k, 0 = root, D-1 = above terminals)."""

    terminals: list[int]
    ancestors: np.ndarray  # [D, n] symbol id of the level-k ancestor of each terminal
    span_end: np.ndarray  # [D, n] bool: the level-k ancestor's span ends at this terminal


@dataclass
class Grammar:
    name: str
    rules: dict[int, list[tuple[int, ...]]]
    levels: list[list[int]] = field(init=False)  # symbol ids per level, root level first, terminals last

    def __post_init__(self) -> None:
        children = {s for options in self.rules.values() for rule in options for s in rule}
        roots = [s for s in self.rules if s not in children]
        if len(roots) != 1:
            raise LayerprobeError(f"grammar {self.name}: expected one root symbol, found {roots}")
        self.levels = [roots]
        while self.levels[-1][0] in self.rules:
            below = sorted({s for parent in self.levels[-1] for rule in self.rules[parent] for s in rule})
            if any(s in self.rules for s in below) and any(s not in self.rules for s in below):
                raise LayerprobeError(f"grammar {self.name}: a level mixes terminals and non-terminals")
            self.levels.append(below)
        seen = [s for level in self.levels for s in level]
        if len(seen) != len(set(seen)):
            raise LayerprobeError(f"grammar {self.name}: a symbol appears on two levels (not layered)")

    @classmethod
    def parse(cls, name: str, text: str) -> Grammar:
        """Read "22->21 20|20 19; 19->16 17 18|17 18 16; ..." (the notation of DESIGN.md)."""
        rules: dict[int, list[tuple[int, ...]]] = {}
        for clause in filter(None, (part.strip() for part in text.split(";"))):
            head, _, body = clause.partition("->")
            rules[int(head)] = [tuple(int(s) for s in option.split()) for option in body.split("|")]
        return cls(name, rules)

    def text(self) -> str:
        return "; ".join(f"{s}->" + "|".join(" ".join(map(str, r)) for r in self.rules[s])
                         for level in self.levels[:-1] for s in level)

    @property
    def depth(self) -> int:
        return len(self.levels) - 1

    @property
    def root(self) -> int:
        return self.levels[0][0]

    @property
    def terminals(self) -> list[int]:
        return self.levels[-1]

    def sample(self, rng: np.random.Generator) -> Sample:
        """Expand from the root, choosing each rule uniformly; record each terminal's ancestors."""
        depth = self.depth
        # a frontier of (symbol, path of ancestors above it); expand level by level
        frontier: list[tuple[int, tuple[int, ...]]] = [(self.root, ())]
        last: list[tuple[bool, ...]] = [()]  # per item, per step: was it the last child of its parent
        for _ in range(depth):
            expanded, expanded_last = [], []
            for (symbol, path), flags in zip(frontier, last):
                options = self.rules[symbol]
                rule = options[rng.integers(len(options))]
                for i, child in enumerate(rule):
                    expanded.append((child, path + (symbol,)))
                    expanded_last.append(flags + (i == len(rule) - 1,))
            frontier, last = expanded, expanded_last
        terminals = [symbol for symbol, _ in frontier]
        ancestors = np.array([path for _, path in frontier], dtype=np.int64).T
        # a level-k span ends at a terminal when it is the last child at every step below level k
        last_arr = np.array(last, dtype=bool)  # [n, D]: step j = child of the level-j symbol
        span_end = np.stack([last_arr[:, k:].all(axis=1) for k in range(depth)])
        return Sample(terminals, ancestors, span_end)

    def span_table(self, terminals: list[int]) -> dict[int, list[int]]:
        """CYK chart: for every symbol s and start i, a bitmask whose bit j says s derives terminals[i:j].

        Levels are filled bottom-up; a rule's chart is the composition of its children's charts.
        Python ints as bitsets keep this ~100x faster than dense boolean matrix products.
        """
        n = len(terminals)
        table: dict[int, list[int]] = {t: [0] * (n + 1) for t in self.terminals}
        for i, t in enumerate(terminals):
            table[t][i] |= 1 << (i + 1)
        for level in reversed(self.levels[:-1]):
            for symbol in level:
                total = [0] * (n + 1)
                for rule in self.rules[symbol]:
                    reach = table[rule[0]]
                    for child in rule[1:]:
                        row = table[child]
                        reach = [_union(row, mask) for mask in reach]
                    total = [a | b for a, b in zip(total, reach)]
                table[symbol] = total
        return table

    def accepts(self, terminals: list[int]) -> bool:
        """Membership: the root derives the whole string."""
        if not terminals or any(t not in self.terminals for t in terminals):
            return False
        return bool(self.span_table(terminals)[self.root][0] >> len(terminals) & 1)

    def length_range(self) -> tuple[int, int]:
        """Shortest and longest string length the grammar can derive."""
        lo = {t: 1 for t in self.terminals}
        hi = dict(lo)
        for level in reversed(self.levels[:-1]):
            for s in level:
                lo[s] = min(sum(lo[c] for c in rule) for rule in self.rules[s])
                hi[s] = max(sum(hi[c] for c in rule) for rule in self.rules[s])
        return lo[self.root], hi[self.root]


CORRUPT_TOKEN_RATE = 0.15
"""In a corrupted string each terminal is replaced by a uniformly drawn one with this probability."""


def corrupt(terminals: list[int], alphabet: list[int], rng: np.random.Generator, rate: float = CORRUPT_TOKEN_RATE) -> list[int]:
    """A corrupted copy (part 1's "beyond perfect data"): each terminal is redrawn with probability `rate`."""
    flips = rng.random(len(terminals)) < rate
    drawn = rng.choice(alphabet, size=len(terminals))
    return [int(d) if f else t for t, f, d in zip(terminals, flips, drawn)]


def _union(rows: list[int], mask: int) -> int:
    """OR of rows[j] over the set bits j of mask."""
    result = 0
    while mask:
        low = mask & -mask
        result |= rows[low.bit_length() - 1]
        mask ^= low
    return result


def random_grammar(depth: int = 4, n_symbols: int = 3, n_terminals: int = 3, deg: tuple[int, int] = (2, 2),
                   rule_len: tuple[int, int] = (2, 3), distinct_in_rule: bool = False, seed: int = 0,
                   name: str | None = None) -> Grammar:
    """A layered grammar drawn like the published ones.

    Level 0 has one root, levels 1..depth-1 have `n_symbols` symbols, level `depth` the
    terminals 1..n_terminals; ids count upward from the terminals (so the root has the largest
    id). Each symbol gets `deg` rules (uniform in the range), each of uniform length in
    `rule_len`, each child uniform on the next level (or distinct children when
    `distinct_in_rule`, as in cfg3b). No rule appears twice on a level (every rule names its
    parent), and a level is redrawn until it uses every symbol of the next level.
    """
    rng = np.random.default_rng(seed)
    sizes = [1] + [n_symbols] * (depth - 1) + [n_terminals]
    levels, next_id = [], 1
    for size in reversed(sizes):
        levels.insert(0, list(range(next_id, next_id + size)))
        next_id += size
    rules: dict[int, list[tuple[int, ...]]] = {}
    for k in range(depth):
        below = levels[k + 1]
        while True:
            drawn: dict[int, list[tuple[int, ...]]] = {}
            used: set[tuple[int, ...]] = set()
            for symbol in levels[k]:
                options = []
                for _ in range(rng.integers(deg[0], deg[1] + 1)):
                    while True:
                        length = int(rng.integers(rule_len[0], rule_len[1] + 1))
                        if distinct_in_rule:
                            rule = tuple(int(s) for s in rng.choice(below, size=min(length, len(below)), replace=False))
                        else:
                            rule = tuple(int(s) for s in rng.choice(below, size=length))
                        if rule not in used:
                            break
                    used.add(rule)
                    options.append(rule)
                drawn[symbol] = options
            if {s for rule in used for s in rule} == set(below):
                break
        rules.update(drawn)
    return Grammar(name or f"random-d{depth}-s{seed}", rules)


def get_grammar(name: str) -> Grammar:
    """A built-in grammar by name (cfg3b, cfg3i, cfg3h, cfg3g, cfg3f, small)."""
    if name not in GRAMMARS:
        raise LayerprobeError(f"unknown grammar '{name}': use one of {', '.join(GRAMMARS)}")
    return Grammar.parse(name, GRAMMARS[name])
