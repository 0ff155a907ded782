"""The lens head's precisions against the fp32 head: the mixed head's error, its bound, and decisions."""

import numpy as np
import pandas as pd
import pytest
import torch
from single_thread import one_torch_thread  # noqa: F401  (autouse fixture)
from tiny import tiny_lm
from transformers import AutoModelForCausalLM, GPTJConfig

import probe_logical
from layerprobe import engine, study1
from layerprobe.head import BLOCK, LensHead, mixed_logsumexp, top_tokens
from layerprobe.models import Adapter
from layerprobe.tasks.base import MCItem

MIXED_TOLERANCE = 0.02
"""Nats, on a candidate's summed log-prob (up to ~15 byte tokens here): measured 0.006 on the tiny llama."""
WORDS = "the cat dog sat on a mat red blue big small ran fast slow tree house sun moon".split()


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERPROBE_CACHE", str(tmp_path))


def random_items(n: int, n_candidates: int, seed: int) -> list[MCItem]:
    rng = np.random.default_rng(seed)
    return [MCItem(" ".join(rng.choice(WORDS, size=int(rng.integers(3, 9)))),
                   [" " + " ".join(rng.choice(WORDS, size=int(rng.integers(1, 4)))) for _ in range(n_candidates)], [0])
            for _ in range(n)]


def states_of(lm, n_rows: int = 64) -> torch.Tensor:
    """Residual states [L+1, n_rows, d] of real text, every layer (flat and peaked rows alike)."""
    ids = lm.tokenizer(" ".join(WORDS * 4))["input_ids"][:n_rows]
    return engine.hidden_states_at(lm, [ids], [list(range(len(ids)))], progress=False)[0]


@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])  # gemma: softcapped logits
def test_mixed_head_scores_within_tolerance_of_fp32(arch):
    lm = tiny_lm(arch)
    items = random_items(12, 4, seed=1)
    exact = engine.score_items(lm, items, progress=False, use_cache=False).logprob
    mixed = engine.score_items(lm, items, progress=False, use_cache=False, head_dtype="mixed").logprob
    plain = engine.score_items(lm, items, progress=False, use_cache=False, head_dtype="bfloat16").logprob
    mixed_error = max(np.abs(a - b).max() for a, b in zip(exact, mixed))
    plain_error = max(np.abs(a - b).max() for a, b in zip(exact, plain))
    assert 0 < mixed_error < MIXED_TOLERANCE
    assert plain_error > 5 * mixed_error  # the tolerance is tighter than what plain bf16 achieves


def test_mixed_head_is_exact_when_every_token_is_recomputed():
    lm = tiny_lm("llama")
    states = states_of(lm)[2]
    rows = torch.arange(len(states)).repeat_interleave(3)
    targets = torch.randint(0, lm.tokenizer.vocab_size, (len(rows),), generator=torch.Generator().manual_seed(0))
    want = torch.log_softmax(lm.adapter.to_logits(states), dim=-1)[rows, targets]
    head = LensHead(lm.adapter, "mixed", top_k=10**6)
    torch.testing.assert_close(head.logprobs(states, rows, targets, "norm"), want, atol=1e-5, rtol=0)


def test_error_is_bounded_by_the_tails_share():
    """|logsumexp error| <= tail share * max over the tail of |exp(bf16 error) - 1|, row by row."""
    lm = tiny_lm("llama")
    head = LensHead(lm.adapter, "mixed", top_k=8)
    states = states_of(lm)
    for layer in range(states.shape[0]):
        inputs = lm.adapter.head_input(states[layer])
        exact_logits = lm.adapter.to_logits(states[layer])
        approximate = head.bf16_logits(inputs)
        top = top_tokens(approximate, head.top_k)
        factor = (approximate[:, : head.vocab_size].float() - exact_logits).exp() - 1
        factor[torch.arange(len(top))[:, None], top] = 0  # the top tokens are exact
        mixed, share = mixed_logsumexp(approximate, lambda t: head.exact_logits(inputs, t), head.top_k)
        error = (mixed - torch.logsumexp(exact_logits, dim=-1)).abs()
        bound = share * factor.abs().amax(dim=-1)
        assert (error <= bound * 1.01 + 1e-5).all(), layer
    assert share.max() > 0.05  # the tail matters in this model: the bound is not trivially met


def test_no_flips_where_candidates_are_close():
    """Two-candidate items built to be close: pairs of candidates of one prompt whose fp32 scores differ
    by 0.03..0.15 nats at some layer. Plain bf16 flips some of those decisions, the mixed head none."""
    lm = tiny_lm("llama", n_layers=2)
    pool = random_items(10, 40, seed=2)
    pool_scores = engine.score_items(lm, pool, progress=False, use_cache=False).logprob
    items = []
    for item, scores in zip(pool, pool_scores):
        gap = np.abs(scores[:, None, :] - scores[None, :, :])  # [K, K, layers]
        for i, j in zip(*np.nonzero(((gap > 0.03) & (gap < 0.15)).any(axis=-1))):
            if i < j:
                items.append(MCItem(item.prompt, [item.candidates[i], item.candidates[j]], [0]))
    margin = {}
    for dtype in ("float32", "bfloat16", "mixed"):
        scores = engine.score_items(lm, items, progress=False, use_cache=False, head_dtype=dtype).logprob
        margin[dtype] = np.stack([s[0] - s[1] for s in scores])  # [items, layers]
    close = (np.abs(margin["float32"]) > 0.03) & (np.abs(margin["float32"]) < 0.15)
    assert close.sum() >= 50
    flips = {dtype: int((np.sign(margin[dtype]) != np.sign(margin["float32"]))[close].sum())
             for dtype in ("bfloat16", "mixed")}
    assert flips["bfloat16"] > 0 and flips["mixed"] == 0, flips


def test_unembedding_bias_and_padding():
    """GPT-J's unembedding has a bias, and its tiny vocabulary is no multiple of BLOCK."""
    torch.manual_seed(0)
    config = GPTJConfig(vocab_size=301, n_embd=32, n_layer=1, n_head=4, rotary_dim=4, n_positions=64)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        model.lm_head.bias.normal_(0, 1.0)
    adapter = Adapter(model)
    states = torch.randn(40, 32) * 3
    rows = torch.arange(40)
    targets = torch.randint(0, 301, (40,), generator=torch.Generator().manual_seed(1))
    want = torch.log_softmax(adapter.to_logits(states), dim=-1)[rows, targets]
    assert LensHead(adapter, "mixed").bf16_logits(adapter.head_input(states)).shape == (40, 320)
    for dtype, tolerance in (("mixed", 2e-3), ("bfloat16", 0.3)):
        got = LensHead(adapter, dtype).logprobs(states, rows, targets, "norm")
        torch.testing.assert_close(got, want, atol=tolerance, rtol=0)


def test_top_tokens_are_torch_topk():
    logits = torch.randn(50, 30 * BLOCK, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    for k in (1, 7, 30, 31):  # 31 > the number of blocks: plain topk
        want = torch.topk(logits, k, dim=-1).values.sort(dim=-1).values
        got = logits.gather(1, top_tokens(logits, k)).sort(dim=-1).values
        assert torch.equal(got, want)


def test_head_dtype_flag_reaches_the_engine(monkeypatch, tmp_path):
    lm = tiny_lm("llama")
    monkeypatch.setattr(study1, "load_model", lambda name, device=None, dtype=None: lm)
    seen = []
    real = study1.score_items
    monkeypatch.setattr(study1, "score_items", lambda *a, **k: seen.append(k["head_dtype"]) or real(*a, **k))
    [mixed] = probe_logical.main(["--limit", "2", "--method", "lens", "--head-dtype", "mixed", "--out", str(tmp_path)])
    [exact] = probe_logical.main(["--limit", "2", "--method", "lens", "--out", str(tmp_path / "default")])
    assert seen and set(seen[: len(seen) // 2]) == {"mixed"} and set(seen[len(seen) // 2:]) == {"float32"}
    assert set(pd.read_csv(mixed)["method"]) == {"lens-norm-mixed"} and set(pd.read_csv(exact)["method"]) == {"lens-norm"}
