"""Logit lens and tuned lens: read next-token logits out of the residual state of any layer.

Layer numbering as everywhere in layerprobe: 0 = embeddings (input of the first block), l = output
of block l, L = output of the last block before the final norm. Both lenses end in the model's own
head (`Adapter.to_logits`: final norm, unembedding, softcap, in fp32), so at layer L both give the
model's logits exactly.

The tuned lens (Belrose et al. 2023) puts one affine translator in front of that head for every
layer 0..L-1, trained to minimise KL(final || translated) on text. Translator l reads the state of
layer l, which is the *input* of the next block: training it on a block's output instead shifts
every curve by one layer (the bug DESIGN.md warns about). Translators are parametrised residually,
h + A h + b with A = 0, b = 0 at the start, so an untrained tuned lens is the logit lens.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from layerprobe.engine import hidden_states_at
from layerprobe.errors import DataError
from layerprobe.corpus import token_sequences
from layerprobe.models import Adapter, LoadedModel, cache_dir
from layerprobe.publish import building, staged

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


@dataclass
class TunedLensConfig:
    """What a tuned lens was trained for and how; saved as config.json next to the weights."""

    model: str
    n_layers: int
    d_model: int
    corpus: str = "default"
    steps: int = 40
    positions_per_step: int = 16
    train_tokens: int = 1024
    held_out_tokens: int = 256
    learning_rate: float = 1e-3
    seed: int = 0
    held_out_kl_logit: list[float] = field(default_factory=list)
    held_out_kl_tuned: list[float] = field(default_factory=list)


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
        return cls(lm.adapter, TunedLensConfig(model=lm.name, n_layers=lm.n_layers, d_model=d_model, **settings))

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


def kl_to_final(lens: Lens, states: torch.Tensor, layer: int, final_logprobs: torch.Tensor) -> torch.Tensor:
    """Mean over positions of KL(final || lens at `layer`), states [P, d], final log-probs [P, V]."""
    logprobs = torch.log_softmax(lens(states, layer), dim=-1)
    return (final_logprobs.exp() * (final_logprobs - logprobs)).sum(-1).mean()


def _all_positions(sequences: list[list[int]]) -> list[list[int]]:
    return [list(range(len(sequence))) for sequence in sequences]


def _stacked_states(lm: LoadedModel, sequences: list[list[int]], progress: bool, desc: str) -> torch.Tensor:
    """States of every layer at every position of the sequences, concatenated: [L+1, N, d]."""
    states = hidden_states_at(lm, sequences, _all_positions(sequences), progress=progress, desc=desc)
    return torch.cat(states, dim=1)


def _final_logprobs(lens: Lens, final_states: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(lens(final_states, lens.n_layers), dim=-1)


def held_out_kl(lens: Lens, states: torch.Tensor, chunk: int = 64) -> np.ndarray:
    """Mean KL(final || lens) per layer [L+1] over the positions of states [L+1, N, d] (0 at layer L)."""
    totals = np.zeros(states.shape[0])
    with torch.no_grad():
        for start in range(0, states.shape[1], chunk):
            block = states[:, start:start + chunk]
            final = _final_logprobs(lens, block[-1])
            for layer in range(states.shape[0]):
                totals[layer] += float(kl_to_final(lens, block[layer], layer, final)) * block.shape[1]
    return totals / states.shape[1]


def train_tuned_lens(lm: LoadedModel, train_sequences: list[list[int]], held_out_sequences: list[list[int]],
                     progress: bool = True, log: bool = True, **settings: object) -> tuple[TunedLens, list[float]]:
    """Train the translators jointly with Adam on KL(final || translated); returns the lens and the loss per step.

    The states of every layer at every position of `train_sequences` are computed once; each step
    draws `positions_per_step` of them. The loss is the KL summed over layers; each layer's term is
    back-propagated on its own so memory holds one layer's P x V logits at a time.
    """
    lens = TunedLens.for_model(lm, **settings)
    config = lens.config
    states = _stacked_states(lm, train_sequences, progress, f"{lm.name} tuned-lens training states")
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    optimizer = torch.optim.Adam(lens.translators.parameters(), lr=config.learning_rate)
    losses: list[float] = []
    bar = tqdm(range(config.steps), desc=f"{lm.name} tuned lens", unit="step", disable=not progress)
    for _ in bar:
        index = torch.randint(0, states.shape[1], (config.positions_per_step,), generator=generator)
        batch = states[:, index]
        final = _final_logprobs(lens, batch[-1])
        optimizer.zero_grad()
        total = 0.0
        for layer in range(config.n_layers):
            loss = kl_to_final(lens, batch[layer], layer, final)
            loss.backward()
            total += float(loss.detach())
        optimizer.step()
        losses.append(total)
        bar.set_postfix(kl_per_layer=f"{total / config.n_layers:.3f}")
    bar.close()
    lens.eval()
    held_out = _stacked_states(lm, held_out_sequences, progress, f"{lm.name} held-out states")
    logit_kl, tuned_kl = held_out_kl(LogitLens(lm.adapter), held_out), held_out_kl(lens, held_out)
    config.held_out_kl_logit, config.held_out_kl_tuned = logit_kl.tolist(), tuned_kl.tolist()
    if log:
        print(f"held-out KL(final || lens) per layer, {sum(map(len, held_out_sequences))} positions:")
        print("layer  logit-lens  tuned-lens")
        for layer in range(config.n_layers + 1):
            print(f"{layer:5d}  {logit_kl[layer]:10.3f}  {tuned_kl[layer]:10.3f}")
    return lens, losses


def default_lens_folder(model: str, corpus: str, steps: int, seed: int) -> Path:
    """Where a tuned lens is cached: $LAYERPROBE_CACHE/lenses/<model>-<corpus>-steps<N>-seed<S>."""
    safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in f"{model}-{corpus}")
    return cache_dir() / "lenses" / f"{safe}-steps{steps}-seed{seed}"


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
            print(f"training a tuned lens for {lm.name} ({config.steps} steps x {config.positions_per_step} positions "
                  f"from {config.train_tokens} tokens; once, cached in {folder})")
            lens, _ = train_tuned_lens(lm, train, held_out, progress=progress, **settings)
            lens.save(folder)
            return lens
    return TunedLens.load(folder, lm)


def _saved(folder: Path) -> bool:
    return (folder / CONFIG_FILE).exists()
