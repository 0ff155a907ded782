"""Study 2's options analysis on MMLU: the shortlist rows against a naive full lens, the letter tokens."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from test_trace import _naive_logits
from tiny import OPTION_WORDS, tiny_lm

from layerprobe.errors import LayerprobeError
from layerprobe.lens import LogitLens
from layerprobe.trace.options import SHORTLIST_K, mmlu_option_task, option_token_ids, shortlist_rows, trace_options

SUBJECTS = ("anatomy", "virology", "astronomy")


def mmlu_records(n: int = 18) -> list[dict]:
    """cais/mmlu rows; every sixth question has three choices (its options are " A" " B" " C")."""
    return [{"question": f"Question {i} about {SUBJECTS[i % 3]}: pick {i % 3}?", "subject": SUBJECTS[i % 3],
             "choices": [f"option {i}-{k}" for k in range(3 if i % 6 == 5 else 4)], "answer": i % 3}
            for i in range(n)]


def write_mmlu(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_shortlist_rows_match_a_naive_recomputation(tmp_path):
    lm = tiny_lm("llama", words=OPTION_WORDS)
    write_mmlu(tmp_path / "mmlu.jsonl", mmlu_records())
    task = mmlu_option_task(8, seed=1, source=tmp_path / "mmlu.jsonl", shots=1)
    assert [len(item.options) for item in task.items].count(3) >= 1  # a three-choice question is in
    # The letters as near copies of a token that is in the top 100 at about half the (item, layer)
    # cells, so they rise and fall together: the shares in the top k are neither 0 nor 1.
    logits = torch.stack([_naive_logits(lm, lm.tokenizer(item.prompt)["input_ids"])[:, -1] for item in task.items])
    in_top = (1 + (logits[..., None, :] > logits[..., :, None]).sum(-1) <= 100).float().mean((0, 1))  # [V]
    token = int((in_top - 0.5).abs().argmin())
    unembed = lm.adapter.unembed.weight
    with torch.no_grad():
        unembed[option_token_ids(lm, [" A", " B", " C", " D"])] = unembed[token] + 0.01 * torch.randn(
            4, unembed.shape[1], generator=torch.Generator().manual_seed(0))
    trace = trace_options(lm, {"logit": LogitLens(lm.adapter)}, task.items, progress=False)["logit"]
    rows = shortlist_rows(trace, model="m", task="options", subtask="mmlu", method="logit-lens")

    best, worst = [], []
    for item in task.items:
        logits = _naive_logits(lm, lm.tokenizer(item.prompt)["input_ids"])[:, -1].double().numpy()  # [L+1, V]
        ids = [lm.tokenizer(option, add_special_tokens=False)["input_ids"][0] for option in item.options]
        ranks = np.array([[1 + (layer > layer[i]).sum() for i in ids] for layer in logits])  # [L+1, K]
        best.append(ranks.min(1))
        worst.append(ranks.max(1))
    best, worst = np.array(best), np.array(worst)  # [N, L+1]

    def values(metric, **extra):
        chosen = [r for r in rows if r["metric"] == metric and all(r.get(k) == v for k, v in extra.items())]
        return np.array([r["value"] for r in sorted(chosen, key=lambda r: r["layer"])])

    np.testing.assert_allclose(values("best_option_median_rank"), np.median(best, 0))
    np.testing.assert_allclose(values("best_option_mean_rank"), best.mean(0))
    np.testing.assert_allclose(values("top1_is_option"), (best == 1).mean(0))
    for k in SHORTLIST_K:
        np.testing.assert_allclose(values("options_in_topk", k=k), (worst <= k).mean(0))
    assert 0 < (worst <= 100).mean() < 1  # the check is not vacuous: some items in, some out
    assert {r["n_items"] for r in rows} == {8}


def test_letter_options_are_the_tokens_the_demonstrations_show(tmp_path):
    lm = tiny_lm("llama", words=OPTION_WORDS)
    write_mmlu(tmp_path / "mmlu.jsonl", mmlu_records())
    task = mmlu_option_task(6, seed=0, source=tmp_path / "mmlu.jsonl", shots=2)
    answer = lm.tokenizer("\nAnswer:", add_special_tokens=False)["input_ids"]
    letter_ids = option_token_ids(lm, [" A", " B", " C", " D"])
    assert len(set(letter_ids)) == 4
    for item in task.items:
        assert item.options == [" A", " B", " C", " D"][: len(item.options)] and item.prompt.endswith("\nAnswer:")
        ids = lm.tokenizer(item.prompt)["input_ids"]
        starts = [i for i in range(len(ids)) if ids[i:i + len(answer)] == answer]
        shown = re.findall(r"\nAnswer: ([A-D])\n", item.prompt)
        assert len(shown) == 2 and len(starts) == 3 and starts[-1] + len(answer) == len(ids)
        # after each demonstration's "Answer:" comes the letter as one token, the option token of that letter
        assert [ids[i + len(answer)] for i in starts[:-1]] == [letter_ids["ABCD".index(letter)] for letter in shown]
    bare = tiny_lm("llama")  # one token per byte: " A" is two tokens
    with pytest.raises(LayerprobeError, match="' A' is not a single token"):
        option_token_ids(bare, [" A", " B"])


@pytest.mark.slow
def test_smollm2_answers_with_the_spaced_letter_token():
    from layerprobe.models import load_model

    lm = load_model("smollm2-135m", device="cpu")
    task = mmlu_option_task(4, seed=0)
    spaced, plain = option_token_ids(lm, [" A", " B", " C", " D"]), option_token_ids(lm, ["A", "B", "C", "D"])
    assert not set(spaced) & set(plain)
    tops = []
    for item in task.items:
        ids = lm.tokenizer(item.prompt)["input_ids"]
        assert lm.tokenizer.convert_ids_to_tokens(ids[-2:]) == ["Answer", ":"]
        with torch.no_grad():
            tops.append(int(lm.model(torch.tensor([ids])).logits[0, -1].argmax()))
    assert all(top in spaced for top in tops)  # the model's own next token is " A".." D", not "A".."D"
