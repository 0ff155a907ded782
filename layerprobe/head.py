"""The lens head's precision: log p(target | state) for (row, target) pairs, in fp32, bf16 or mixed.

On CPU the head (final norm + unembedding + log-softmax at the scored rows) is about two thirds of
the engine's cost, nearly all of it the [rows, d] x [d, V] unembedding. A bf16 unembedding is ~4x
faster on a CPU with AMX, but a plain bf16 head moves summed log-probs by over a nat and flips
multiple-choice decisions (bench/bench_head.py). The `mixed` head keeps most of the speed of the
bf16 matmul and the accuracy of fp32 where it matters:

1. bf16 logits over the whole vocabulary find each row's top `top_k` tokens;
2. those tokens' logits and every target's logit are recomputed exactly in fp32;
3. logsumexp = log(sum over the top-k of exp(exact) + sum over the rest of exp(bf16)).

So the target's logit is exact and bf16 enters only through the tail of the partition function.
If the tail holds a share s of the mass and its bf16 logits are off by e on average (weighted by
probability), the log-sum-exp, and so every log-prob, is off by about s * e. The share s is large
where the distribution is flat (SmolLM2's last layer on random words: s up to 0.7), so e must be
small, and plain bf16 logits are not: rounding the state h to bf16 moves logit j by W_j . delta,
and that error is shared by the similar tokens near the top instead of averaging out (e = 0.045,
0.03 nats of logsumexp). The bf16 matmul therefore also reads the rounding error delta projected on
the unembedding's top CORRECTION_RANK right singular directions P: inputs [bf16(h), P^T delta]
against weights [W, W P], one matmul 5% deeper, fp32 accumulation. That removes the shared error
(e = 0.02, 0.004 nats of logsumexp on the same rows); the output's own rounding is unbiased and
averages out. `mixed_logsumexp` returns s per row so the bound can be measured (bench/bench_head.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional

from layerprobe.errors import LayerprobeError
from layerprobe.models import Adapter

HEAD_DTYPES = ("float32", "bfloat16", "mixed")
MIXED_TOP_K = 32
"""Tokens per row recomputed in fp32 by the mixed head (topk costs about the same for 16..64)."""
CORRECTION_RANK = 32
"""Directions of the state's bf16 rounding error the mixed head keeps (rank 8: 0.007 nats, 32: 0.004, full: 0.003)."""
BLOCK = 64
"""The mixed head finds the top tokens and sums the tail in blocks of this many tokens (the vocabulary
is padded to a multiple)."""


class LensHead:
    """Final norm (or none, `raw` lens) + unembedding + log-softmax, read only at the targets."""

    def __init__(self, adapter: Adapter, dtype: str = "float32", top_k: int = MIXED_TOP_K):
        if dtype not in HEAD_DTYPES:
            raise LayerprobeError(f"unknown head dtype '{dtype}': use {', '.join(HEAD_DTYPES)}")
        self.adapter, self.dtype = adapter, dtype
        unembed = adapter.fp32_unembed
        self.weight, self.bias = unembed.weight, unembed.bias
        self.top_k = min(top_k, self.vocab_size)
        if dtype == "float32":
            return
        # bf16 copies, made once per LensHead (the engine makes one per score_items call). Zero rows pad
        # the vocabulary to a multiple of BLOCK; `bf16_logits` sets their logits to -inf.
        padding = -self.vocab_size % BLOCK
        weight = functional.pad(self.weight, (0, 0, 0, padding))
        if dtype == "mixed":
            self.directions = principal_directions(self.weight, CORRECTION_RANK)
            weight = torch.cat([weight, weight @ self.directions], dim=1)
        self.weight_bf16 = weight.to(torch.bfloat16)
        self.bias_bf16 = None if self.bias is None else functional.pad(self.bias, (0, padding)).to(torch.bfloat16)

    @property
    def vocab_size(self) -> int:
        return self.weight.shape[0]

    def logprobs(self, hidden: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor, lens: str) -> torch.Tensor:
        """log p(targets[i] | hidden[rows[i]]) in fp32 for states [n, d] of one layer."""
        if self.dtype == "float32":
            # log_softmax is one fused kernel on CPU, faster than logsumexp and a subtraction.
            return torch.log_softmax(self.adapter.to_logits(hidden, lens), dim=-1)[rows, targets]
        inputs = self.adapter.head_input(hidden, lens)
        approximate = self.bf16_logits(inputs)
        if self.dtype == "bfloat16":
            return torch.log_softmax(approximate, dim=-1)[rows, targets].float()
        logsumexp, _ = mixed_logsumexp(approximate, lambda tokens: self.exact_logits(inputs, tokens), self.top_k)
        return self.exact_logits(inputs[rows], targets[:, None])[:, 0] - logsumexp[rows]

    def bf16_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """bf16 logits [n, V rounded up to BLOCK] of fp32 head inputs [n, d]; the padding columns are -inf.

        The mixed head also feeds the state's rounding error along `directions` (module docstring).
        """
        low = inputs.to(torch.bfloat16)
        if self.dtype == "mixed":
            low = torch.cat([low, ((inputs - low.float()) @ self.directions).to(torch.bfloat16)], dim=-1)
        logits = self.adapter.softcap_logits(functional.linear(low, self.weight_bf16, self.bias_bf16))
        logits[:, self.vocab_size:] = float("-inf")
        return logits

    def exact_logits(self, inputs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """fp32 logits [n, m] of tokens [n, m] for head inputs [n, d]: a gather and a batched dot product."""
        logits = torch.einsum("nmd,nd->nm", self.weight[tokens], inputs)
        if self.bias is not None:
            logits = logits + self.bias[tokens]
        return self.adapter.softcap_logits(logits)


def principal_directions(weight: torch.Tensor, rank: int, iterations: int = 4) -> torch.Tensor:
    """An orthonormal basis [d, rank] of (nearly) the top right singular directions of weight [V, d].

    Subspace iteration from a fixed private seed: deterministic, leaves the global RNG alone, and costs
    a few thin matmuls where a full SVD of a 70B model's unembedding would not be cheap. Any basis is
    correct (the correction is exact along it); a better one only removes more of the rounding error.
    """
    rank = min(rank, *weight.shape)
    generator = torch.Generator(device=weight.device).manual_seed(0)
    basis = torch.randn(weight.shape[1], rank, generator=generator, device=weight.device)
    for _ in range(iterations):
        basis = torch.linalg.qr(weight.T @ (weight @ basis)).Q
    return basis


def top_tokens(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [n, k] of each row's k largest logits (in no order), for V a multiple of BLOCK.

    The k largest lie in the k blocks of BLOCK tokens with the largest maxima (a block holding one of
    them has a larger maximum than every block holding none), so one top-k over the block maxima and
    one over those k blocks' tokens give them: about half the time of torch.topk over V on a CPU.
    """
    blocks = logits.unflatten(1, (-1, BLOCK))
    if k > blocks.shape[1]:
        return torch.topk(logits, k, dim=-1, sorted=False).indices
    best = torch.topk(blocks.amax(dim=-1), k, dim=-1, sorted=False).indices
    candidates = blocks[torch.arange(len(logits), device=logits.device)[:, None], best].flatten(1)
    within = torch.topk(candidates, k, dim=-1, sorted=False).indices
    return best.gather(1, within // BLOCK) * BLOCK + within % BLOCK


def mixed_logsumexp(approximate: torch.Tensor, exact_logits: Callable[[torch.Tensor], torch.Tensor],
                    top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """logsumexp per row [n] with the top_k tokens (by the bf16 logits [n, V], V a multiple of BLOCK) exact.

    Overwrites `approximate` (in place saves a pass and an allocation of [n, V]).
    `exact_logits(tokens [n, k]) -> fp32 [n, k]` computes the exact logits of chosen tokens. Both parts
    are shifted by the same bf16-representable peak (a shift rounded differently in the two parts would
    scale the tail by up to exp(half a bf16 step), 6% at a logit of 30). Also returns the tail's share of
    the partition function per row, which bounds the error (module docstring).
    """
    top = top_tokens(approximate, top_k)
    exact = exact_logits(top)
    shift = exact.amax(dim=-1, keepdim=True).to(approximate.dtype)
    tail_terms = approximate.sub_(shift).exp_()
    tail_terms[torch.arange(len(top), device=top.device)[:, None], top] = 0.0  # index_put: scatter_ is 100x slower on CPU
    # bf16 partial sums of BLOCK terms added in fp32: relative error ~3e-4, where one bf16 result rounds
    # by up to 4e-3 and an fp32-accumulating sum first converts the whole tensor (10x slower on CPU).
    tail = tail_terms.unflatten(1, (-1, BLOCK)).sum(dim=-1).sum(dim=-1, dtype=torch.float32)
    head = (exact - shift.float()).exp().sum(dim=-1)
    total = head + tail
    return shift[:, 0].float() + total.log(), tail / total
