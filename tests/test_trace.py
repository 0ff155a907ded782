"""Study-2 traces: ranks, earliest layers, readouts against a naive full lens, cuts, options, buckets, flips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import tiny_lm

from layerprobe.lens import LogitLens
from layerprobe.tasks.factual import Fact
from layerprobe.trace.facts import fact_cuts, trace_facts
from layerprobe.trace.frequency import bucket_of, flip_rows, frequency_rows, token_frequency_ranks
from layerprobe.trace.options import (
    OptionItem, OptionTrace, entailment_items, option_rows, sentiment_items, trace_options,
)
from layerprobe.trace.pos import pos_cuts, trace_cuts, word_cut_positions
from layerprobe.trace.readout import (
    CutItems, Readout, earliest_layer, first_layer, rank_rows, read_positions, settle_layer, token_ranks,
)
from layerprobe.errors import LayerprobeError


def test_token_ranks_count_only_strictly_higher_scores():
    scores = torch.tensor([[0.1, 0.5, 0.5, 0.2, 0.9], [3.0, 3.0, 3.0, 3.0, 3.0]])
    ranks = [[int(token_ranks(scores, torch.tensor([t, t]))[row]) for t in range(5)] for row in range(2)]
    assert ranks[0] == [5, 2, 2, 4, 1]  # the tied 0.5s share rank 2
    assert ranks[1] == [1, 1, 1, 1, 1]


def test_earliest_first_and_settle_layers():
    ranks = np.array([[50, 9, 3, 1], [1, 4, 1, 1], [7, 7, 7, 7]])
    assert earliest_layer(ranks, 1).tolist() == [3, 0, 4]  # 4 = L+1: never
    assert earliest_layer(ranks, 5).tolist() == [2, 0, 4]
    assert earliest_layer(ranks, 10).tolist() == [1, 0, 0]
    condition = np.array([[True, False, True, True], [False, False, False, True], [True, True, True, False]])
    assert first_layer(condition).tolist() == [0, 3, 0]
    assert settle_layer(condition).tolist() == [2, 3, 4]


def _naive_logits(lm, ids: list[int]) -> torch.Tensor:
    """Every layer at every position via transformers' own hidden states: [L+1, T, V]."""
    with torch.no_grad():
        out = lm.model(torch.tensor([ids]), output_hidden_states=True)
        # hidden_states[-1] is already normed in transformers 5: its logits are the model's.
        layers = [lm.adapter.to_logits(h[0]) for h in out.hidden_states[:-1]] + [out.logits[0].float()]
    return torch.stack(layers)


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_read_positions_matches_a_naive_full_lens(model_type):
    lm = tiny_lm(model_type)
    sequences = [lm.tokenizer(text)["input_ids"] for text in ("The river rose after the rain.", "A cat sat.")]
    positions = [[2, 5, 9], [1, 4]]
    options = [ord("e"), ord("a"), ord("s")]  # byte-level tokenizer: token id = byte
    keep_first = lambda i, top1: np.arange(len(top1)) != 1  # drop the middle position of each sequence
    readouts, kept = read_positions(lm, {"logit": LogitLens(lm.adapter)}, sequences, positions, select=keep_first,
                                    options=options, progress=False)
    assert kept == [(0, 0), (0, 2), (1, 0)]
    readout = readouts["logit"]
    for row, (seq, index) in enumerate(kept):
        logits = _naive_logits(lm, sequences[seq])[:, positions[seq][index]].double().numpy()  # [L+1, V]
        target = logits[-1].argmax()
        assert readout.target[row] == target
        np.testing.assert_array_equal(readout.rank[row], 1 + (logits > logits[:, [target]]).sum(1))
        np.testing.assert_array_equal(readout.top1[row], logits.argmax(1))
        logprobs = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
        np.testing.assert_allclose(readout.prob[row], np.exp(logprobs[:, target]), rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(readout.option_logprob[row], logprobs[:, options], rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(readout.option_rank[row], 1 + (logits[:, None, :] > logits[:, options, None]).sum(-1))
    assert (readout.rank[:, -1] == 1).all()


def test_word_cut_positions_use_token_boundaries():
    text = "The cat sat, on"
    offsets = [(0, 3), (3, 7), (7, 11), (11, 12), (12, 15)]  # GPT-2 style: the space belongs to the next token
    assert word_cut_positions(offsets, text, 4) == 1
    assert word_cut_positions(offsets, text, 11) == 3  # the comma: no space before it
    assert word_cut_positions([(0, 0), (0, 5)], "Hello", 2) is None  # inside a token
    assert word_cut_positions([(0, 3), (3, 4), (4, 7)], text, 4) == 2  # a byte tokenizer: the space is its own token


def test_pos_cuts_target_the_first_token_of_each_word():
    lm = tiny_lm("llama")
    text = "The old dog and the young cat slept in the warm sun."
    tags = {0: [(text.index("dog"), "NOUN"), (text.index("the young"), "DET"), (text.index("."), "PUNCT")]}
    items = pos_cuts(lm, [text], tags=tags, random_per_paragraph=2, seed=0)
    ids = lm.tokenizer(text)["input_ids"]
    assert items.sequences == [ids]
    labels, expected, positions = items.labels[0], items.expected[0], items.positions[0]
    assert sorted(labels) == ["DET", "NOUN", "PUNCT", "RANDOM", "RANDOM"]
    for label, token, position in zip(labels, expected, positions):
        assert token == ids[position + 1]
    by_label = {label: lm.tokenizer.decode([token]) for label, token in zip(labels, expected)}
    assert (by_label["NOUN"], by_label["DET"], by_label["PUNCT"]) == ("d", "t", ".")


def _greedy(lm, ids: list[int], n: int) -> list[int]:
    ids = list(ids)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(lm.model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids


def test_trace_cuts_keeps_only_the_models_own_guesses_up_to_the_limit():
    lm = tiny_lm("llama")
    sequence = _greedy(lm, lm.tokenizer("Once upon a time")["input_ids"], 8)
    start = len(sequence) - 8
    # Cuts before each greedy token: its expected token is the model's guess, except at the odd ones.
    positions = list(range(start - 1, len(sequence) - 1))
    expected = [sequence[p + 1] if n % 2 == 0 else (sequence[p + 1] + 1) % 256 for n, p in enumerate(positions)]
    labels = ["A" if n < 4 else "B" for n in range(len(positions))]
    items = CutItems([sequence], [positions], [expected], [labels])
    readouts = trace_cuts(lm, {"logit": LogitLens(lm.adapter)}, items, limit=None, progress=False)["logit"]
    assert {label: len(r.target) for label, r in readouts.items()} == {"A": 2, "B": 2}
    assert readouts["A"].target.tolist() == [expected[0], expected[2]]
    limited = trace_cuts(lm, {"logit": LogitLens(lm.adapter)}, items, limit=1, progress=False)["logit"]
    assert {label: len(r.target) for label, r in limited.items()} == {"A": 1, "B": 1}


def test_facts_are_kept_only_when_every_answer_token_is_the_final_guess():
    lm = tiny_lm("llama")
    facts = [Fact("colour", name, answer, f"The colour of {name} is")
             for name, answer in [("snow", "ab"), ("grass", "cd"), ("sky", "e"), ("coal", "xyz")]]
    items = fact_cuts(lm, facts, limit=None, seed=0)
    # Byte tokens: " ab" and " cd" have 3 tokens, " e" 2, " xyz" 4 (dropped).
    assert sorted(label for labels in items.labels for label in labels) == \
        sorted(["len3/pos1", "len3/pos2", "len3/pos3"] * 2 + ["len2/pos1", "len2/pos2"])
    for sequence, positions, expected in zip(items.sequences, items.positions, items.expected):
        assert [sequence[p + 1] for p in positions] == expected and sequence[-len(expected):] == expected
    # Replace one answer by the model's own continuation: only that fact survives the filter.
    prompt_ids = items.sequences[0][: items.positions[0][0] + 1]
    own = _greedy(lm, prompt_ids, len(items.expected[0]))
    items.sequences[0], items.expected[0] = own, own[len(prompt_ids):]
    readouts = trace_facts(lm, {"logit": LogitLens(lm.adapter)}, items, progress=False)["logit"]
    n = len(items.expected[0])
    assert {label: len(r.target) for label, r in readouts.items()} == {f"len{n}/pos{j + 1}": 1 for j in range(n)}


def test_option_rows_against_a_hand_computation():
    # 3 items, layers 0..3, options A B C; the correct option is A, B, A.
    logprob = np.log(np.array([
        [[.2, .5, .3], [.5, .3, .2], [.3, .4, .3], [.6, .3, .1]],  # A tops at 1, loses at 2, tops at 3: enter 1, settle 3
        [[.4, .4, .2], [.2, .7, .1], [.1, .8, .1], [.2, .7, .1]],  # tie at 0 is not on top: enter 1, settle 1
        [[.9, .05, .05], [.5, .4, .1], [.4, .5, .1], [.3, .6, .1]],  # wrong at the end: no enter/settle
    ]))
    rows = option_rows(OptionTrace(logprob, np.array([0, 1, 0])), model="m", task="options", subtask="t", method="logit-lens")
    top = {r["layer"]: r["value"] for r in rows if r["metric"] == "correct_top_option"}
    rank = {r["layer"]: r["value"] for r in rows if r["metric"] == "correct_option_rank"}
    assert top == pytest.approx({0: 1 / 3, 1: 1.0, 2: 1 / 3, 3: 2 / 3})
    assert rank == pytest.approx({0: (3 + 1 + 1) / 3, 1: 1.0, 2: (2 + 1 + 2) / 3, 3: (1 + 1 + 2) / 3})
    summary = {r["metric"]: (r["value"], r["n_items"]) for r in rows if r["layer"] == -1}
    assert summary == {"enter_layer": (1.0, 2), "settle_layer": (2.0, 2)}


def test_options_of_different_counts_share_one_prefix_list():
    lm = tiny_lm("llama")
    items = [OptionItem("Pick one: A or B?", ["A", "B"], 1), OptionItem("Pick one: A, B or C?", ["A", "B", "C"], 2)]
    logprob = trace_options(lm, {"logit": LogitLens(lm.adapter)}, items, progress=False)["logit"].logprob
    assert logprob.shape == (2, lm.n_layers + 1, 3)
    assert np.isneginf(logprob[0, :, 2]).all() and np.isfinite(logprob[0, :, :2]).all() and np.isfinite(logprob[1]).all()
    with pytest.raises(LayerprobeError, match="prefixes"):
        trace_options(lm, {"logit": LogitLens(lm.adapter)}, [items[1], OptionItem("x", ["B", "A"], 0)], progress=False)


def test_sentiment_and_entailment_items_are_labelled_consistently():
    for item in sentiment_items(limit=20, seed=3):
        review = item.prompt.rsplit("Review: ", 1)[1]
        positive = any(word in review for word in ("wonderful", "excellent", "delightful", "superb", "lovely", "fantastic"))
        assert item.options == [" positive", " negative"] and item.correct == (0 if positive else 1)
        assert item.prompt.count("Sentiment: positive") == item.prompt.count("Sentiment: negative") == 2
    items = entailment_items(limit=20, seed=3)
    assert {item.correct for item in items} == {0, 1}
    assert all(item.prompt.count("hypothesis? yes") == item.prompt.count("hypothesis? no") == 2 for item in items)
    assert [i.prompt for i in entailment_items(limit=5, seed=3)] == [i.prompt for i in items[:5]]


def test_frequency_ranks_buckets_and_rows():
    lm = tiny_lm("llama")
    ranks = token_frequency_ranks(lm.tokenizer, ["aaab", "ab c"], vocab_size=258)
    a, b, space, c = (lm.tokenizer(ch, add_special_tokens=False)["input_ids"][0] for ch in "ab c")
    assert ranks[a] == 1 and ranks[b] == 2
    assert {ranks[space], ranks[c]} == {3, 4} and (ranks[space] < ranks[c]) == (space < c)  # tie: smaller id first
    assert sorted(ranks.tolist()) == list(range(1, 259))
    hand = np.arange(1, 2001)  # token t has frequency rank t + 1
    assert bucket_of(hand, np.array([0, 9, 10, 99, 100, 999, 1000])).tolist() == \
        ["top10", "top10", "11-100", "11-100", "101-1000", "101-1000", "rest"]
    # 4 positions, layers 0..2; final top-1 in the last column.
    top1 = np.array([[5, 500, 7], [1500, 50, 50], [7, 7, 7], [50, 60, 1200]])
    readout = Readout(target=top1[:, -1], rank=np.ones((4, 3), int), prob=np.ones((4, 3)), top1=top1)
    shares = {(r["subtask"], r["layer"]): r["value"] for r in frequency_rows(readout, hand, model="m", method="x")}
    assert [shares[("top10", l)] for l in range(3)] == [0.5, 0.25, 0.5]
    assert [shares[("rest", l)] for l in range(3)] == [0.25, 0.0, 0.25]
    assert all(sum(shares[(b, l)] for b in ("top10", "11-100", "101-1000", "rest")) == pytest.approx(1) for l in range(3))
    flips = {(r["subtask"], r["layer"]): (r["value"], r["n_items"]) for r in flip_rows(readout, hand, model="m", method="x")}
    assert [flips[("all", l)][0] for l in range(3)] == [0.75, 0.5, 0.0]
    assert flips[("top10", 0)] == (0.5, 2) and flips[("11-100", 0)] == (1.0, 1) and flips[("rest", 1)] == (1.0, 1)


def test_rank_rows_summaries():
    rank = np.array([[40, 3, 1], [2, 1, 1], [9, 9, 1]])
    readout = Readout(target=np.zeros(3, int), rank=rank, prob=np.full((3, 3), 0.5), top1=np.zeros((3, 3), int))
    rows = rank_rows(readout, model="m", task="pos", subtask="DET", method="logit-lens")
    by = {(r["metric"], r["layer"], r.get("k")): r["value"] for r in rows}
    assert [by[("rank1_share", l, None)] for l in range(3)] == pytest.approx([0, 1 / 3, 1])
    assert [by[("median_rank", l, None)] for l in range(3)] == [9, 3, 1]
    assert by[("earliest_layer", -1, 1)] == pytest.approx((2 + 1 + 2) / 3)
    assert by[("earliest_layer", -1, 10)] == pytest.approx((1 + 0 + 0) / 3)
