"""Layered CFGs: the sampler against the chart parser and a brute-force parser, labels against the rules."""

from functools import lru_cache

import numpy as np
import pytest

from layerprobe.synthetic.cfg import GRAMMARS, Grammar, get_grammar, random_grammar


def brute_force_accepts(grammar: Grammar, terminals: list[int]) -> bool:
    """Top-down memoised recursion over (symbol, start, end): an independent membership oracle."""
    text = tuple(terminals)

    @lru_cache(maxsize=None)
    def derives(symbol: int, i: int, j: int) -> bool:
        if symbol not in grammar.rules:
            return j == i + 1 and text[i] == symbol
        return any(splits(rule, i, j) for rule in grammar.rules[symbol])

    @lru_cache(maxsize=None)
    def splits(rule: tuple[int, ...], i: int, j: int) -> bool:
        if len(rule) == 1:
            return derives(rule[0], i, j)
        return any(derives(rule[0], i, k) and splits(rule[1:], k, j) for k in range(i + 1, j))

    return derives(grammar.root, 0, len(text))


def test_cfg3b_is_the_published_grammar():
    grammar = get_grammar("cfg3b")
    assert grammar.levels == [[22], [19, 20, 21], [16, 17, 18], [13, 14, 15], [10, 11, 12], [7, 8, 9], [1, 2, 3]]
    assert grammar.rules[22] == [(21, 20), (20, 19)] and grammar.rules[9] == [(3, 2, 1), (2, 1)]
    assert all(len(set(rule)) == len(rule) for rules in grammar.rules.values() for rule in rules)
    lengths = [len(grammar.sample(np.random.default_rng(seed)).terminals) for seed in range(40)]
    assert 200 < np.mean(lengths) < 350  # the paper: ~275 on average, 168-373
    for name in GRAMMARS:
        assert Grammar.parse(name, get_grammar(name).text()).rules == get_grammar(name).rules


def test_cfg3b_samples_accepted_and_corruptions_rejected():
    grammar = get_grammar("cfg3b")
    rng = np.random.default_rng(0)
    rejected = 0
    for _ in range(4):
        terminals = grammar.sample(rng).terminals
        assert grammar.accepts(terminals)
        i = int(rng.integers(len(terminals) - 1))
        rejected += not grammar.accepts(terminals[:i] + terminals[i + 1:])  # one token deleted
        rejected += not grammar.accepts(terminals + [terminals[-1]])  # one token appended
    assert rejected >= 7
    assert not grammar.accepts([]) and not grammar.accepts([1, 2, 99])


def test_chart_parser_agrees_with_brute_force_on_corrupted_strings():
    grammar = get_grammar("small")
    rng = np.random.default_rng(1)
    verdicts = []
    for _ in range(50):
        terminals = grammar.sample(rng).terminals
        assert grammar.accepts(terminals)
        corrupted = list(terminals)
        i = int(rng.integers(len(corrupted)))
        corrupted[i] = int(rng.choice([t for t in grammar.terminals if t != corrupted[i]]))
        assert brute_force_accepts(grammar, terminals)
        verdict = grammar.accepts(corrupted)
        assert verdict == brute_force_accepts(grammar, corrupted)
        verdicts.append(verdict)
    assert sum(verdicts) < 8  # a single substitution almost always leaves this language


@pytest.mark.parametrize("name", ["cfg3b", "small"])
def test_labels_agree_with_the_parse(name):
    grammar = get_grammar(name)
    sample = grammar.sample(np.random.default_rng(2))
    depth, n = grammar.depth, len(sample.terminals)
    assert sample.ancestors.shape == sample.span_end.shape == (depth, n)
    assert (sample.ancestors[0] == grammar.root).all() and sample.span_end[:, -1].all()
    table = grammar.span_table(sample.terminals)
    below = [(t, i, i + 1) for i, t in enumerate(sample.terminals)]  # spans of level depth
    for level in reversed(range(depth)):
        ends = np.flatnonzero(sample.span_end[level])
        starts = np.concatenate([[0], ends[:-1] + 1])
        spans = []
        for start, end in zip(starts, ends):
            symbol = int(sample.ancestors[level, start])
            assert (sample.ancestors[level, start:end + 1] == symbol).all()
            assert symbol in grammar.levels[level]
            assert table[symbol][int(start)] >> int(end + 1) & 1  # the chart parser derives the labelled span
            children = tuple(s for s, i, j in below if start <= i and j <= end + 1)
            assert children in grammar.rules[symbol]
            spans.append((symbol, int(start), int(end) + 1))
        below = spans
    assert below == [(grammar.root, 0, n)]


def test_generators_are_deterministic_by_seed():
    grammar = get_grammar("cfg3b")
    a, b = grammar.sample(np.random.default_rng(5)), grammar.sample(np.random.default_rng(5))
    assert a.terminals == b.terminals and (a.ancestors == b.ancestors).all() and (a.span_end == b.span_end).all()
    assert random_grammar(seed=4).text() == random_grammar(seed=4).text() != random_grammar(seed=5).text()
    assert get_grammar("small").text() == random_grammar(depth=4, seed=3).text()


def test_random_grammar_follows_the_procedure():
    grammar = random_grammar(depth=5, n_symbols=4, deg=(2, 3), rule_len=(2, 3), distinct_in_rule=True, seed=0)
    assert [len(level) for level in grammar.levels] == [1, 4, 4, 4, 4, 3]
    assert grammar.root == max(grammar.rules) and grammar.terminals == [1, 2, 3]
    for k, level in enumerate(grammar.levels[:-1]):
        rules = [rule for symbol in level for rule in grammar.rules[symbol]]
        assert len(rules) == len(set(rules))  # no rule twice on a level
        assert {s for rule in rules for s in rule} == set(grammar.levels[k + 1])
        assert all(2 <= len(grammar.rules[s]) <= 3 for s in level)
        assert all(2 <= len(rule) <= 3 and len(set(rule)) == len(rule) for rule in rules)
    rng = np.random.default_rng(0)
    assert all(grammar.accepts(grammar.sample(rng).terminals) for _ in range(5))
