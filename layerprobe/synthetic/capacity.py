"""Knowledge capacity (Physics of Language Models, part 3.3): how many bits a model stores per parameter.

A bioD-style population: N people with unique two-token names and K attributes, attribute k drawn
uniformly from a value space of size T_k (one token per value). The data therefore holds exactly
N * sum_k log2(T_k) bits beyond the names. After training, the model's cross-entropy on the value
tokens tells how many of those bits it has learned: for attribute k, N * log2(T_k) minus the summed
loss in bits over the people (a model that knows nothing has loss log2(T_k) per person and has
learned 0 bits; one that is always sure and right has learned all of them), floored at 0.
Dividing by the parameter count gives the paper's bits per parameter (~2 after 1000 exposures).

`quantise` rounds every weight matrix to signed b-bit integers with one scale per row (int8,
per-channel) or per group of 32 weights of a row (int4, as GGUF's Q4_0 blocks) and dequantises it
back to float, so the same evaluation measures what survives (the paper: int8 keeps the 2
bits/param, int4 does not).

Junk data (the paper's section on data quality): a share `junk` of the training documents are
biographies in the same format of people outside the population, a name pair no useful person has,
with every attribute value drawn afresh for each document, so no junk person is ever seen twice with
the same facts (the paper's junk bioS(N') with N' so large that each junk person appears about once;
to the model, random data in biography form). The useful people keep their exposures: the stream
grows to useful / (1 - junk) documents. `domain` prepends a source token (`DOMAIN`, the paper's
"wikipedia.org") to every useful biography and to none of the junk, so the model can tell which
documents are worth storing.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import nn

from layerprobe import parallel
from layerprobe.errors import LayerprobeError
from layerprobe.results import ResultsFile
from layerprobe.synthetic.train import build_model, n_parameters, train
from layerprobe.synthetic.vocab import Vocab


@dataclass(frozen=True)
class CapacityConfig:
    n_people: int = 500
    value_sizes: tuple[int, ...] = (16, 16, 32, 32, 64)  # T_k of each attribute


@dataclass
class Population:
    """People (name token pairs) and their attribute values [N, K]."""

    names: list[tuple[str, str]]
    values: np.ndarray  # int [N, K], values[i, k] < value_sizes[k]
    value_sizes: tuple[int, ...]

    def attribute_tokens(self) -> list[str]:
        return [f"attr{k}" for k in range(len(self.value_sizes))]

    def value_token(self, value: int) -> str:
        return f"v{value}"

    def entry(self, person: int, domain: bool = False) -> list[str]:
        """One person's record: "first last attr0 v3 attr1 v7 ... .", after the `DOMAIN` token if `domain`."""
        return self.record(self.names[person], self.values[person], domain)

    def record(self, name: tuple[str, str], values: Sequence[int], domain: bool = False) -> list[str]:
        """The record of any name and values (a junk biography is one of a name outside the population)."""
        tokens = [DOMAIN] * domain + list(name)
        for attribute, value in zip(self.attribute_tokens(), values):
            tokens += [attribute, self.value_token(int(value))]
        return tokens + ["."]

    def value_positions(self, domain: bool = False) -> list[int]:
        """Index of each attribute's value token within an entry (all entries have the same layout)."""
        return [domain + 2 + 2 * k + 1 for k in range(len(self.value_sizes))]

    def junk_names(self) -> list[tuple[str, str]]:
        """Every pairing of the population's first and last names that names no one in it: the junk people
        (their tokens are all in the vocabulary, so junk adds no parameter)."""
        taken = set(self.names)
        firsts = sorted({first for first, _ in self.names})
        lasts = sorted({last for _, last in self.names})
        return [(first, last) for first in firsts for last in lasts if (first, last) not in taken]

    def vocabulary_tokens(self) -> list[str]:
        firsts = sorted({first for first, _ in self.names})
        lasts = sorted({last for _, last in self.names})
        return firsts + lasts + self.attribute_tokens() + [self.value_token(v) for v in range(max(self.value_sizes))] + ["."]


DOMAIN = "wikipedia.org"
"""The source token that `--domain` puts before every useful biography."""


def make_population(config: CapacityConfig, seed: int = 0) -> Population:
    """N people with unique names (from pools just large enough) and uniform random attribute values."""
    rng = np.random.default_rng(seed)
    pool = math.ceil(math.sqrt(config.n_people * 2))
    pairs = rng.choice(pool * pool, size=config.n_people, replace=False)
    names = [(f"F{pair // pool}", f"L{pair % pool}") for pair in pairs.tolist()]
    values = np.stack([rng.integers(0, size, config.n_people) for size in config.value_sizes], axis=1)
    return Population(names, values, tuple(config.value_sizes))


def known_bits(n_people: int, value_sizes: Sequence[int]) -> float:
    """Bits of knowledge in the population: N * sum_k log2(T_k)."""
    return n_people * sum(math.log2(size) for size in value_sizes)


def learned_bits(loss_bits: np.ndarray, value_sizes: Sequence[int]) -> float:
    """Bits the model has learned, from its loss in bits on each (person, attribute) value token [N, K]:
    sum over attributes of max(0, N * log2(T_k) - summed loss)."""
    loss_bits = np.asarray(loss_bits, dtype=float)
    n_people = loss_bits.shape[0]
    per_attribute = [n_people * math.log2(size) - loss_bits[:, k].sum() for k, size in enumerate(value_sizes)]
    return float(sum(max(0.0, bits) for bits in per_attribute))


@torch.no_grad()
def value_loss_bits(model: nn.Module, ids: torch.Tensor, positions: Sequence[int], batch_size: int = 256) -> np.ndarray:
    """Cross-entropy in bits of the token at each of `positions` given the tokens before it, per row [N, K].

    `ids` [N, T] must hold every entry at the same layout (bos first), `positions` index into it.
    """
    model.eval()
    device = next(model.parameters()).device
    out = []
    targets = torch.as_tensor(list(positions))
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size].to(device)
        log_probs = torch.log_softmax(model(input_ids=chunk).logits.float(), dim=-1)
        picked = log_probs[:, targets - 1].gather(-1, chunk[:, targets].unsqueeze(-1)).squeeze(-1)
        out.append((-picked / math.log(2)).cpu().numpy())
    return np.concatenate(out)


def quantise(model: nn.Module, bits: int = 8, group: int | None = None) -> nn.Module:
    """A copy of `model` with every weight matrix rounded to `bits`-bit integers and dequantised.

    Symmetric quantisation (zero point 0, scale = max |w| / (2^(bits-1) - 1) over each row, or over
    each run of `group` weights of a row when the row divides into them; codes in -q..q), written out
    in plain torch because `torch.quantize_per_channel` is deprecated; vectors (norms, biases) stay
    float, as in the usual recipes.
    """
    top = 2 ** (bits - 1) - 1
    quantised = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in quantised.parameters():
            if parameter.dim() != 2:
                continue
            rows, columns = parameter.shape
            size = group if group and columns % group == 0 else columns
            weight = parameter.float().reshape(rows, columns // size, size)
            scale = (weight.abs().amax(dim=-1, keepdim=True) / top).clamp_min(1e-12)
            codes = torch.clamp(torch.round(weight / scale), -top, top)
            parameter.copy_((codes * scale).reshape(rows, columns).to(parameter.dtype))
    return quantised


PRECISIONS = {"fp32": None, "int8": dict(bits=8), "int4": dict(bits=4, group=32)}
"""Each measured precision: the arguments of `quantise` (None: the model as trained)."""


def encode_population(vocab: Vocab, population: Population, domain: bool = False) -> torch.Tensor:
    """Every person's entry as ids [N, T] (<bos> entry <eos>; all entries have the same length)."""
    return torch.tensor([vocab.encode(population.entry(i, domain), bos=True, eos=True) for i in range(len(population.names))])


def junk_share(junk: float) -> Fraction:
    """--junk as an exact fraction a/b (b <= 1000), so the stream holds exactly that share of junk."""
    if not 0 <= junk < 1:
        raise LayerprobeError(f"--junk is the share of junk documents, at least 0 and below 1, not {junk}")
    return Fraction(junk).limit_denominator(1000)


def junk_before(positions: np.ndarray, junk: Fraction) -> np.ndarray:
    """How many of the stream positions before each position hold junk: floor(position * junk). Position i
    is junk when that count steps up at i + 1, which spreads the junk evenly and makes every prefix's share
    the requested one to within a document."""
    return positions * junk.numerator // junk.denominator


def stream_length(useful: int, junk: Fraction) -> int:
    """The shortest stream that holds `useful` useful documents when a share `junk` of it is junk."""
    # a stream of length L holds fewer than L (1 - junk) + 1 useful documents: start just below the answer
    length = max(0, (useful - 1) * junk.denominator // (junk.denominator - junk.numerator))
    while length - int(junk_before(np.array(length), junk)) < useful:
        length += 1
    return length


JunkFn = Callable[[np.random.Generator, int], torch.Tensor]
"""(rng, count) -> `count` junk documents as ids [count, T], <bos> first last ... <eos>."""


def junk_documents(population: Population, vocab: Vocab) -> JunkFn:
    """Junk biographies: a name pair outside the population, values drawn afresh for every document."""
    names = population.junk_names()
    if not names:
        raise LayerprobeError("the population uses every pairing of its names: no name is left for junk people")
    template = np.array(vocab.encode(population.record(names[0], [0] * len(population.value_sizes)), bos=True, eos=True))
    name_ids = np.array([vocab.encode(name) for name in names])
    value_ids = np.array(vocab.encode([population.value_token(v) for v in range(max(population.value_sizes))]))
    value_columns = [p + 1 for p in population.value_positions()]  # after <bos>

    def make(rng: np.random.Generator, count: int) -> torch.Tensor:
        ids = np.tile(template, (count, 1))
        ids[:, 1:3] = name_ids[rng.integers(0, len(names), count)]
        for column, size in zip(value_columns, population.value_sizes):
            ids[:, column] = value_ids[rng.integers(0, size, count)]
        return torch.as_tensor(ids)
    return make


def batch_fn(entries: torch.Tensor, batch_size: int, seed: int = 0, junk: Fraction = Fraction(0),
             junk_fn: JunkFn | None = None, given: int = 3) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """Step -> (ids, loss mask): people in a fresh random order each pass, so after k * N / batch steps
    every person has been seen exactly k times (k exposures). The loss skips the first `given` tokens of
    a useful entry (<bos> first last, and the domain token when there is one), which are the key to the
    knowledge, not knowledge. With `junk`, that share of the stream's positions (`junk_before`) holds a
    fresh `junk_fn` document instead (loss after its name), and the useful documents move along, so the k-th
    exposure of everyone takes k * N / (1 - junk) positions; junk documents are right-padded (pad: no loss)
    to the useful entries' length, or the useful ones to theirs."""
    n_people = len(entries)
    mask = torch.ones_like(entries, dtype=torch.bool)
    mask[:, :given] = False

    def make(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        positions = np.arange(step * batch_size, (step + 1) * batch_size)
        before = junk_before(positions, junk)
        is_junk = junk_before(positions + 1, junk) > before
        passes, offsets = np.divmod(positions - before, n_people)  # the index of each useful document
        orders = {p: np.random.default_rng([seed, int(p)]).permutation(n_people) for p in np.unique(passes[~is_junk])}
        people = torch.as_tensor([orders[p][o] for p, o in zip(passes[~is_junk], offsets[~is_junk])], dtype=torch.long)
        if not is_junk.any():
            return entries[people], mask[people]
        extra = junk_fn(np.random.default_rng([seed, step, 1]), int(is_junk.sum()))
        width = max(entries.shape[1], extra.shape[1])
        ids = torch.full((batch_size, width), Vocab.pad_id, dtype=entries.dtype)
        loss = torch.zeros((batch_size, width), dtype=torch.bool)
        useful = torch.as_tensor(~is_junk)
        ids[useful, :entries.shape[1]], loss[useful, :entries.shape[1]] = entries[people], mask[people]
        ids[~useful, :extra.shape[1]], loss[~useful, 3:extra.shape[1]] = extra, True  # <bos> first last given
        return ids, loss
    return make


@dataclass(frozen=True)
class CapacityRun:
    """One model size trained for a number of exposures on one population."""

    layers: int
    width: int
    exposures: int
    people: int = 1000
    value_sizes: tuple[int, ...] = CapacityConfig.value_sizes
    heads: int = 2
    batch: int = 64
    lr: float = 3e-3
    seed: int = 0
    arch: str = "llama"
    junk: float = 0.0  # share of the training documents that are junk biographies
    domain: bool = False  # DOMAIN before every useful biography

    def name(self) -> str:
        junk = f"-junk{self.junk:g}" if self.junk else ""
        return (f"capacity-n{self.people}-{self.arch}-l{self.layers}w{self.width}-x{self.exposures}{junk}"
                + "-domain" * self.domain + (f"-s{self.seed}" if self.seed else ""))

    def stream(self) -> int:
        """Training documents, useful and junk: exposures x people useful ones."""
        return stream_length(self.people * self.exposures, junk_share(self.junk))

    def steps(self) -> int:
        return math.ceil(self.stream() / self.batch)

    def vocabulary(self, population: Population) -> Vocab:
        """The population's tokens, and DOMAIN in every run with junk or a domain token, so junk and junk +
        domain have the same parameters (the plain run, their no-junk baseline, has 2 x width fewer: DOMAIN's
        embedding and output rows)."""
        return Vocab(population.vocabulary_tokens() + [DOMAIN] * bool(self.junk or self.domain))

    def condition(self) -> str:
        """'no junk', 'junk 7/8', 'junk 7/8 + domain': the label of the junk experiment's figure."""
        share = junk_share(self.junk)
        return ("no junk" if not share else f"junk {share}") + " + domain" * self.domain


def train_and_measure(run: CapacityRun, out_root: Path, results: ResultsFile, data_dir: Path,
                      device: str = "cpu", progress: bool = True) -> None:
    """Train one run (resumable) and add its bits per parameter in fp32 and after int8 and int4 quantisation."""
    if results.done(model=run.name(), task="capacity", method=list(PRECISIONS)[-1]):
        return
    population = make_population(CapacityConfig(run.people, run.value_sizes), seed=run.seed)
    vocab = run.vocabulary(population)
    entries = encode_population(vocab, population, run.domain)
    junk = junk_share(run.junk)
    junk_fn = junk_documents(population, vocab) if junk else None
    model = build_model(run.arch, len(vocab), run.layers, run.width, run.heads, entries.shape[1], seed=run.seed).to(device)
    train(model, batch_fn(entries, run.batch, run.seed, junk, junk_fn, given=3 + run.domain), steps=run.steps(), lr=run.lr,
          out_dir=Path(out_root) / run.name(), curve_csv=Path(data_dir) / f"train_{run.name()}.csv", desc=run.name(),
          progress=progress)
    if not parallel.is_main():  # the main process measures and writes; the others only helped train
        return
    positions = [p + 1 for p in population.value_positions(run.domain)]  # after <bos>
    total = known_bits(run.people, run.value_sizes)
    params = n_parameters(model)
    for method, arguments in PRECISIONS.items():
        measured = model if arguments is None else quantise(model, **arguments)
        bits = learned_bits(value_loss_bits(measured, entries, positions), run.value_sizes)
        results.add([{"model": run.name(), "task": "capacity", "subtask": "", "language": "", "method": method,
                      "layer": -1, "n_layers": run.layers, "metric": "bits_per_param", "value": bits / params,
                      "n_items": run.people, "ci_low": math.nan, "ci_high": math.nan, "n_params": params,
                      "exposures": run.exposures, "quantised": arguments is not None, "learned_bits": bits,
                      "known_bits": total, "width": run.width, "junk": run.junk, "domain": run.domain,
                      "condition": run.condition(), "seed": run.seed}])
