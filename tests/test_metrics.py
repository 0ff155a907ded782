"""MC metrics on a hand-computed example (two layers, five candidates)."""

import numpy as np
import pytest

from layerprobe.metrics import accuracy, candidate_scores, item_metrics, mc1, mc2, mc3
from layerprobe.tasks.base import MCItem

# candidates 0 (best), 1 true; 2, 3, 4 false. Columns: layer 0, layer 1.
LOGPROB = np.log(np.array([
    [0.10, 0.40],
    [0.30, 0.20],
    [0.20, 0.05],
    [0.05, 0.25],
    [0.15, 0.10],
]))
TRUE, FALSE = [0, 1], [2, 3, 4]


def test_mc1():
    # layer 0: best 0.10 < max false 0.20 -> 0; layer 1: 0.40 > 0.25 -> 1
    assert mc1(LOGPROB, 0, FALSE).tolist() == [0.0, 1.0]


def test_mc2():
    # layer 0: (0.10 + 0.30) / 0.80 = 0.5; layer 1: (0.40 + 0.20) / 1.00 = 0.6
    assert mc2(LOGPROB, TRUE, FALSE) == pytest.approx([0.5, 0.6])


def test_mc3():
    # layer 0: max false 0.20; 0.30 beats it, 0.10 not -> 1/2; layer 1: max false 0.25; 0.40 yes, 0.20 no -> 1/2
    assert mc3(LOGPROB, TRUE, FALSE).tolist() == [0.5, 0.5]
    assert mc3(LOGPROB, [1], [3]).tolist() == [1.0, 0.0]


def test_accuracy_is_strict_and_uses_best_true():
    assert accuracy(LOGPROB, TRUE).tolist() == [1.0, 1.0]  # best true (0.30 / 0.40) beats all false
    assert accuracy(LOGPROB, [0]).tolist() == [0.0, 1.0]  # candidate 1 counts as false here
    tie = np.log(np.array([[0.5], [0.5]]))
    assert accuracy(tie, [0]).tolist() == [0.0]


def test_mc2_no_underflow():
    very_negative = LOGPROB - 2000.0
    assert mc2(very_negative, TRUE, FALSE) == pytest.approx([0.5, 0.6])


def test_length_norm_and_item_metrics():
    n_tokens = np.array([1, 2, 1, 1, 1])
    scores = candidate_scores(LOGPROB, n_tokens, length_norm=True)
    assert scores[1] == pytest.approx(np.log([0.30, 0.20]) / 2)
    item = MCItem("q", [" a", " b", " c", " d", " e"], correct=TRUE, meta={"best": 0, "mc1_false": [2, 3], "mc2_false": FALSE})
    values = item_metrics([item, item], [LOGPROB, LOGPROB], [n_tokens, n_tokens], truthfulqa=True)
    assert set(values) == {"mc1", "mc2", "mc3"} and values["mc2"].shape == (2, 2)
    assert values["mc1"][:, 0].tolist() == [0.0, 1.0]
    assert values["mc2"][:, 1] == pytest.approx([0.5, 0.6])
    only_1 = MCItem("q", item.candidates, correct=[1])
    # summed: layer 1 has 0.20 < 0.40 -> miss; per token: log(0.2)/2 = -0.80 > log(0.4) = -0.92 -> hit
    assert item_metrics([only_1], [LOGPROB], [n_tokens])["accuracy"][:, 0].tolist() == [1.0, 0.0]
    normed = item_metrics([only_1], [LOGPROB], [n_tokens], length_norm=True)
    assert list(normed) == ["accuracy"] and normed["accuracy"][:, 0].tolist() == [1.0, 1.0]
