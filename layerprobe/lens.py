"""Logit lens and tuned lens: read next-token logits out of the residual state of any layer.

Layer numbering as everywhere in layerprobe: 0 = embeddings (input of the first block), l = output
of block l, L = output of the last block before the final norm. Both lenses end in the model's own
head (`Adapter.to_logits`: final norm, unembedding, softcap, in fp32), so at layer L both give the
model's logits exactly.

The tuned lens (Belrose et al. 2023) puts one affine translator in front of that head for every
layer 0..L-1, trained to minimise KL(final || translated) on text. Translator l reads the state of
layer l, which is the *input* of the next block (transformers' `hidden_states[l]`, the tuned-lens
package's `transform_hidden(h, idx=l)`; like that package, layer L has no translator): training it
on a block's output instead shifts every curve by one layer (the bug DESIGN.md warns about).
Translators are parametrised residually, h + A h + b, so A = 0, b = 0 is the logit lens.

Training (`train_tuned_lens`) caches the states of every layer for tens of thousands of training
tokens once, sets each translator to the ridge least-squares map from its layer's states to the last
layer's (d x d normal equations: seconds), then optionally fine-tunes on the KL itself. The KL is the
expensive part: every position of every layer is unembedded over the whole vocabulary, forward and
backward, so it runs fused in row chunks with a bf16 unembedding (`unembed_kl`).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from layerprobe.engine import hidden_states_at, weights_digest
from layerprobe.errors import DataError
from layerprobe.corpus import token_sequences
from layerprobe.models import Adapter, LoadedModel, cache_dir
from layerprobe.publish import building, staged
from layerprobe.results import bootstrap_interval

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "translators.safetensors"


class Lens(nn.Module):
    """Maps the residual state of a layer to next-token logits through the model's own head."""

    def __init__(self, adapter: Adapter):
        super().__init__()
        self.adapter = adapter  # a plain object: the model's weights are not this module's parameters

    @property
    def n_layers(self) -> int:
        return self.adapter.n_layers

    def transform(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        """The state the head should read for a state of `layer` (identity for the logit lens)."""
        return hidden

    def forward(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        """fp32 logits [..., V] for states [..., d] of one layer."""
        return self.adapter.to_logits(self.transform(hidden, layer), "norm")

    def all_layers(self, states: torch.Tensor) -> torch.Tensor:
        """fp32 logits [L+1, P, V] for states [L+1, P, d]: keep P small, this is L+1 x P x V floats."""
        return torch.stack([self(states[layer], layer) for layer in range(states.shape[0])])


class LogitLens(Lens):
    """Final norm and unembedding applied to every layer as if it were the last (nostalgebraist 2020)."""


LENS_VERSION = 2
"""Bumped whenever training could give a different lens: part of the cache key."""
RESULT_FIELDS = ("held_out_positions", "held_out_kl_logit", "held_out_kl_start", "held_out_kl_tuned",
                 "held_out_kl_logit_ci", "held_out_kl_tuned_ci", "train_cpu_seconds")


@dataclass
class TunedLensConfig:
    """What a tuned lens was trained for and how (the cache key) and what it measured; saved as config.json."""

    model: str
    n_layers: int
    d_model: int
    weights: str = ""  # engine.weights_digest of the model: a fine-tuned checkpoint under the same name gets its own lens
    corpus: str = "default"
    train_tokens: int = 16384
    held_out_tokens: int = 1024
    ridge: float = 1e-3
    steps: int = 8
    positions_per_step: int = 512
    optimizer: str = "adam"
    learning_rate: float = 1e-5
    momentum: float = 0.9
    train_head: str = "bfloat16"
    seed: int = 0
    version: int = LENS_VERSION
    held_out_positions: int = 0
    held_out_kl_logit: list[float] = field(default_factory=list)
    held_out_kl_start: list[float] = field(default_factory=list)
    held_out_kl_tuned: list[float] = field(default_factory=list)
    held_out_kl_logit_ci: list[list[float]] = field(default_factory=list)
    held_out_kl_tuned_ci: list[list[float]] = field(default_factory=list)
    train_cpu_seconds: float = 0.0

    def settings(self) -> dict[str, object]:
        """Everything that decides the trained weights (not what was measured afterwards)."""
        return {key: value for key, value in asdict(self).items() if key not in RESULT_FIELDS}

    def key(self) -> str:
        """A short hash of the settings: a lens trained otherwise (or by older code) gets another folder."""
        return hashlib.sha256(json.dumps(self.settings(), sort_keys=True).encode()).hexdigest()[:12]


class TunedLens(Lens):
    """One affine translator per layer 0..L-1 in front of the model's head; layer L reads the head directly."""

    def __init__(self, adapter: Adapter, config: TunedLensConfig):
        super().__init__(adapter)
        self.config = config
        self.translators = nn.ModuleList(nn.Linear(config.d_model, config.d_model) for _ in range(config.n_layers))
        for translator in self.translators:
            nn.init.zeros_(translator.weight)
            nn.init.zeros_(translator.bias)
        self.to(adapter.head_device)

    @classmethod
    def for_model(cls, lm: LoadedModel, **settings: object) -> "TunedLens":
        """An untrained (identity) tuned lens sized for `lm`."""
        d_model = lm.model.get_input_embeddings().weight.shape[1]
        config = TunedLensConfig(model=lm.name, n_layers=lm.n_layers, d_model=d_model,
                                 weights=weights_digest(lm.model), **settings)
        return cls(lm.adapter, config)

    def transform(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        if layer == self.n_layers:
            return hidden
        hidden = hidden.to(device=self.translators[layer].weight.device, dtype=torch.float32)
        return hidden + self.translators[layer](hidden)

    def save(self, folder: str | Path) -> None:
        """config.json + translators.safetensors, written to a temporary folder and renamed into place."""
        with staged(folder, folder=True) as staging:
            tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in self.translators.state_dict().items()}
            save_file(tensors, str(staging / WEIGHTS_FILE))
            (staging / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path, lm: LoadedModel) -> "TunedLens":
        """A saved lens for `lm`; a one-line `DataError` if the folder is broken or sized for another model."""
        folder = Path(folder)
        config_path = folder / CONFIG_FILE
        try:
            raw = json.loads(config_path.read_text(encoding="utf-8"))
            known = {f.name for f in fields(TunedLensConfig)}
            config = TunedLensConfig(**{key: value for key, value in raw.items() if key in known})
        except (OSError, json.JSONDecodeError, TypeError) as error:
            raise DataError(config_path, f"not a tuned-lens config ({error.__class__.__name__}: {error})") from None
        lens = cls.for_model(lm)
        if (config.n_layers, config.d_model) != (lens.config.n_layers, lens.config.d_model):
            raise DataError(config_path, f"lens for {config.n_layers} layers x d={config.d_model}, model '{lm.name}' has "
                                         f"{lens.config.n_layers} x d={lens.config.d_model}", field="n_layers")
        try:
            state = load_file(str(folder / WEIGHTS_FILE))
            lens.translators.load_state_dict(state)
        except (OSError, RuntimeError) as error:
            raise DataError(folder / WEIGHTS_FILE, f"unreadable translator weights ({str(error).splitlines()[0]})") from None
        lens.config = config
        return lens


# --------------------------------------------------------------------------- training and evaluation

STATE_GROUP = 32
"""Sequences whose states are computed at once while the training states are cached."""
EVAL_CHUNK = 256
"""Positions unembedded at once in evaluation and fine-tuning: a few [chunk, V] fp32 tensors (50 MB each on SmolLM2)."""
TRAIN_HEADS = ("float32", "bfloat16")


def kl_to_final(lens: Lens, states: torch.Tensor, layer: int, final_logprobs: torch.Tensor) -> torch.Tensor:
    """Mean over positions of KL(final || lens at `layer`), states [P, d], final log-probs [P, V]."""
    logprobs = torch.log_softmax(lens(states, layer), dim=-1)
    return (final_logprobs.exp() * (final_logprobs - logprobs)).sum(-1).mean()


def _final_logprobs(lens: Lens, final_states: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(lens(final_states, lens.n_layers), dim=-1)


def cached_states(lm: LoadedModel, sequences: list[list[int]], progress: bool = True, desc: str = "states") -> torch.Tensor:
    """States of every layer at every position of the sequences, concatenated: [L+1, N, d] fp32.

    Filled group by group into one preallocated tensor, so memory peaks at the states plus one group.
    """
    total = sum(map(len, sequences))
    states: torch.Tensor | None = None
    offset = 0
    bar = tqdm(total=total, desc=f"{lm.name} {desc}", unit="tok", disable=not progress)
    for start in range(0, len(sequences), STATE_GROUP):
        group = sequences[start:start + STATE_GROUP]
        for part in hidden_states_at(lm, group, [list(range(len(s))) for s in group], progress=False):
            if states is None:
                states = torch.empty(part.shape[0], total, part.shape[2])
            states[:, offset:offset + part.shape[1]] = part
            offset += part.shape[1]
            bar.update(part.shape[1])
    bar.close()
    if states is None:
        raise ValueError("no tokens to compute states for")
    return states


def position_kl(lens: Lens, states: torch.Tensor, chunk: int = EVAL_CHUNK) -> np.ndarray:
    """KL(final || lens) [L+1, N] at every layer and position of states [L+1, N, d] (0 at layer L), in fp32."""
    values = np.zeros(states.shape[:2])
    with torch.no_grad():
        for start in range(0, states.shape[1], chunk):
            block = states[:, start:start + chunk]
            final = _final_logprobs(lens, block[-1])
            for layer in range(states.shape[0]):
                logprobs = torch.log_softmax(lens(block[layer], layer), dim=-1)
                values[layer, start:start + block.shape[1]] = (final.exp() * (final - logprobs)).sum(-1).numpy()
    return values


def held_out_kl(lens: Lens, states: torch.Tensor, chunk: int = EVAL_CHUNK) -> np.ndarray:
    """Mean KL(final || lens) per layer [L+1] over the positions of states [L+1, N, d] (0 at layer L), in fp32."""
    return position_kl(lens, states, chunk).mean(axis=1)


def least_squares_start(lens: "TunedLens", states: torch.Tensor) -> None:
    """Set translator l to the ridge least-squares affine map from layer l's states to the last layer's.

    The target is the last state divided by its RMS: the final norm discards each row's scale, so
    rows with a large norm must not dominate the fit. The ridge is `config.ridge` times the mean
    eigenvalue of the centred Gram matrix; the d x d normal equations are solved in float64.
    """
    final = states[-1]
    target = final / final.pow(2).mean(-1, keepdim=True).sqrt()
    target_mean = target.mean(0)
    target_centred = target - target_mean
    d_model = states.shape[-1]
    identity = torch.eye(d_model, dtype=torch.float64)
    with torch.no_grad():
        for layer, translator in enumerate(lens.translators):
            inputs = states[layer]
            input_mean = inputs.mean(0)
            centred = inputs - input_mean
            gram = (centred.T @ centred).double()
            gram += lens.config.ridge * torch.trace(gram) / d_model * identity
            solution = torch.linalg.solve(gram, (centred.T @ target_centred).double())  # [d_in, d_out]
            weight = solution.T.float()
            device = translator.weight.device
            translator.weight.copy_((weight - identity.float()).to(device))
            translator.bias.copy_((target_mean - weight @ input_mean).to(device))


class _UnembedKL(torch.autograd.Function):
    """Sum over rows of KL(target || softmax(unembed(x))) with its gradient, computed in one pass.

    Autograd would keep the [rows, V] logits and their softmax for the backward pass; here the
    gradient (softmax - p) W is formed right away, so memory holds one chunk's logits at a time and
    the unembedding can run in bf16 (`weight` in bf16, fp32 accumulation) while the loss is fp32.
    """

    @staticmethod
    def forward(ctx, normed: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, softcap: float | None,
                target_logprobs: torch.Tensor) -> torch.Tensor:
        logits = (normed.to(weight.dtype) @ weight.T).float()
        if bias is not None:
            logits = logits + bias
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        logprobs = torch.log_softmax(logits, dim=-1)
        target = target_logprobs.exp()
        loss = (target * (target_logprobs - logprobs)).sum()
        grad = logprobs.exp_().sub_(target)
        if softcap:
            grad *= 1 - (logits / softcap) ** 2
        ctx.save_for_backward((grad.to(weight.dtype) @ weight).float())
        return loss

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (grad_normed,) = ctx.saved_tensors
        return grad_output * grad_normed, None, None, None, None


def unembed_kl(normed: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, softcap: float | None,
               target_logprobs: torch.Tensor) -> torch.Tensor:
    """Sum over rows of KL(target || head(normed)) for head-input states [P, d] (see `_UnembedKL`), differentiable in `normed`."""
    return _UnembedKL.apply(normed, weight, bias, softcap, target_logprobs)


def fine_tune(lens: "TunedLens", states: torch.Tensor, progress: bool = True) -> list[float]:
    """Minimise the KL(final || tuned) summed over layers, on `positions_per_step` random cached positions per step.

    SGD with Nesterov momentum (the tuned-lens paper's optimizer) or Adam; the learning rate decays
    linearly to 0. Returns the training loss per step (mean KL per layer, before the step).
    """
    config = lens.config
    if config.steps == 0:
        return []
    if config.train_head not in TRAIN_HEADS:
        raise ValueError(f"unknown train_head '{config.train_head}': use {', '.join(TRAIN_HEADS)}")
    adapter = lens.adapter
    unembed = adapter.fp32_unembed
    weight = unembed.weight.detach().to(getattr(torch, config.train_head))
    bias = None if unembed.bias is None else unembed.bias.detach().float()
    parameters = list(lens.translators.parameters())
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(parameters, lr=config.learning_rate, momentum=config.momentum, nesterov=True)
    elif config.optimizer == "adam":
        optimizer = torch.optim.Adam(parameters, lr=config.learning_rate)
    else:
        raise ValueError(f"unknown optimizer '{config.optimizer}': use sgd or adam")
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / config.steps)
    generator = torch.Generator().manual_seed(config.seed)
    n_positions = min(config.positions_per_step, states.shape[1])
    losses: list[float] = []
    bar = tqdm(range(config.steps), desc=f"{config.model} tuned lens", unit="step", disable=not progress)
    for _ in bar:
        index = torch.randperm(states.shape[1], generator=generator)[:n_positions]
        optimizer.zero_grad()
        total = 0.0
        for start in range(0, n_positions, EVAL_CHUNK):
            batch = states[:, index[start:start + EVAL_CHUNK]]
            final = _final_logprobs(lens, batch[-1])
            for layer in range(config.n_layers):
                normed = adapter.head_input(lens.transform(batch[layer], layer))
                loss = unembed_kl(normed, weight, bias, adapter.softcap, final) / n_positions
                loss.backward()
                total += float(loss.detach())
        optimizer.step()
        schedule.step()
        losses.append(total / config.n_layers)
        bar.set_postfix(kl_per_layer=f"{losses[-1]:.3f}")
    bar.close()
    return losses


def train_tuned_lens(lm: LoadedModel, train_sequences: list[list[int]], held_out_sequences: list[list[int]],
                     progress: bool = True, log: bool = True, **settings: object) -> tuple[TunedLens, list[float]]:
    """Cache the training states, start every translator at its least-squares map, fine-tune on KL, measure.

    Returns the lens, whose config holds the held-out KL per layer of the logit lens, of the
    least-squares start and of the trained lens, and the CPU seconds of this process, and the
    training loss per step.
    """
    clock = time.process_time()
    torch.manual_seed(int(settings.get("seed", 0)))
    lens = TunedLens.for_model(lm, **settings)
    config = lens.config
    states = cached_states(lm, train_sequences, progress, "tuned-lens training states")
    least_squares_start(lens, states)
    held_out = cached_states(lm, held_out_sequences, progress, "held-out states")
    start_kl = held_out_kl(lens, held_out)
    losses = fine_tune(lens, states, progress)
    del states
    lens.eval()
    logit, tuned = position_kl(LogitLens(lm.adapter), held_out), position_kl(lens, held_out)
    logit_kl, tuned_kl = logit.mean(axis=1), tuned.mean(axis=1)
    config.held_out_positions = held_out.shape[1]
    config.held_out_kl_logit, config.held_out_kl_start = logit_kl.tolist(), start_kl.tolist()
    config.held_out_kl_tuned = tuned_kl.tolist()
    config.held_out_kl_logit_ci = np.stack(bootstrap_interval(logit, seed=config.seed), axis=1).tolist()
    config.held_out_kl_tuned_ci = np.stack(bootstrap_interval(tuned, seed=config.seed), axis=1).tolist()
    config.train_cpu_seconds = time.process_time() - clock
    if log:
        print(f"held-out KL(final || lens) per layer, {held_out.shape[1]} positions "
              f"({config.train_cpu_seconds:.1f} CPU s in this process):")
        print("layer  logit-lens  least-squares  tuned-lens")
        for layer in range(config.n_layers + 1):
            print(f"{layer:5d}  {logit_kl[layer]:10.3f}  {start_kl[layer]:13.3f}  {tuned_kl[layer]:10.3f}")
    return lens, losses


def kl_rows(config: TunedLensConfig, logit_method: str, tuned_method: str) -> list[dict[str, object]]:
    """Results rows (task `lens`, subtask `held-out`, metric `kl`) of both lenses' held-out KL per layer."""
    rows = []
    for method, means, intervals in ((logit_method, config.held_out_kl_logit, config.held_out_kl_logit_ci),
                                     (tuned_method, config.held_out_kl_tuned, config.held_out_kl_tuned_ci)):
        for layer, (value, (low, high)) in enumerate(zip(means, intervals)):
            rows.append(dict(model=config.model, task="lens", subtask="held-out", language="en", method=method,
                             layer=layer, n_layers=config.n_layers, metric="kl", value=value,
                             n_items=config.held_out_positions, ci_low=low, ci_high=high))
    return rows


def default_lens_folder(model: str, corpus: str, config: TunedLensConfig) -> Path:
    """Where a tuned lens is cached: $LAYERPROBE_CACHE/lenses/<model>-<corpus>-v<version>-<settings hash>."""
    safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in f"{model}-{corpus}")
    return cache_dir() / "lenses" / f"{safe}-v{config.version}-{config.key()}"


def cached_tuned_lens(lm: LoadedModel, folder: str | Path, train_paragraphs: list[str], held_out_paragraphs: list[str],
                      progress: bool = True, **settings: object) -> TunedLens:
    """The tuned lens saved in `folder`, or one trained now on the paragraphs and saved there."""
    folder = Path(folder)
    # Several processes may ask at once: one trains and saves, the others wait and load what it saved.
    with building(folder, _saved, f"to train a tuned lens for {lm.name}") as must_train:
        if must_train:
            config = TunedLens.for_model(lm, **settings).config
            train = token_sequences(lm.tokenizer, train_paragraphs, config.train_tokens, seed=config.seed)
            held_out = token_sequences(lm.tokenizer, held_out_paragraphs, config.held_out_tokens, seed=config.seed)
            print(f"training a tuned lens for {lm.name} (least squares, then {config.steps} steps x "
                  f"{config.positions_per_step} positions of {config.train_tokens} tokens; once, cached in {folder})")
            lens, _ = train_tuned_lens(lm, train, held_out, progress=progress, **settings)
            lens.save(folder)
            return lens
    return TunedLens.load(folder, lm)


def _saved(folder: Path) -> bool:
    return (folder / CONFIG_FILE).exists()
