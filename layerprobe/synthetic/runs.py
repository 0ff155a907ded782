"""A training run on a synthetic world: its configuration, its data, its stages, and reloading it.

`out/runs/<name>/` holds `run.json` (the configuration, which also regenerates the world: the
grammar or the population, from the seed), `vocab.json`, `model/` (final weights) and the
checkpoints of each stage. bioS `pretrain-finetune` runs two stages: `pretrain/` on biographies,
then the run folder itself fine-tuned on the QA-train people's questions (loss on answers only).
`mixed` trains once on half biographies and half QA-train questions per batch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from layerprobe import parallel
from layerprobe.errors import DataError, LayerprobeError
from layerprobe.models import LoadedModel
from layerprobe.results import atomic_write_text
from layerprobe.synthetic import bios
from layerprobe.synthetic.cfg import Grammar, get_grammar
from layerprobe.synthetic.data import Batch, bios_docs, cfg_batches, cfg_vocab, corpus_batches, pad, qa_docs, step_rng
from layerprobe.synthetic.train import build_model, load_trained, n_parameters, train, wrap
from layerprobe.synthetic.vocab import Vocab


@dataclass
class RunConfig:
    world: str  # cfg | bios
    arch: str = "llama"
    rotary: bool = True
    layers: int = 4
    width: int = 128
    heads: int = 4
    steps: int = 1000
    batch: int = 32
    lr: float = 1e-3
    seed: int = 0
    grammar: str = "small"  # cfg
    people: int = 400  # bios
    mode: str = "mixed"  # bios: mixed | pretrain-finetune
    augment: bool = False  # bios: multi + permute + fullname
    multi: int = 5
    finetune_steps: int = 300  # bios pretrain-finetune
    canon: str = ""  # Canon layers, a subset of ABCD (layerprobe.synthetic.canon)

    def name(self) -> str:
        position = ("" if self.rotary else "-abs") + (f"-canon{self.canon}" if self.canon else "")
        if self.world == "cfg":
            return f"cfg-{self.grammar}-{self.arch}{position}"
        return f"bios-{self.mode}-{'aug' if self.augment else 'noaug'}-{self.arch}{position}"

    def max_len(self) -> int:
        return self.grammar_().length_range()[1] + 2 if self.world == "cfg" else 128

    def grammar_(self) -> Grammar:
        return get_grammar(self.grammar)

    def population(self) -> bios.Population:
        return bios.make_population(self.people, seed=self.seed)

    def vocab(self) -> Vocab:
        return cfg_vocab(self.grammar_()) if self.world == "cfg" else bios.build_vocab()

    def condition(self) -> str:
        """The bioS training condition as the CSVs name it, e.g. "mixed/aug"."""
        return f"{self.mode}/{'aug' if self.augment else 'noaug'}"

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise DataError(path, f"not a run configuration ({error})") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown or "world" not in data:
            raise DataError(path, "unknown or missing keys", field=(unknown or ["world"])[0])
        return cls(**data)


def validate(config: RunConfig) -> None:
    if config.world not in ("cfg", "bios"):
        raise LayerprobeError(f"unknown world '{config.world}' (cfg or bios)")
    if config.mode not in ("mixed", "pretrain-finetune"):
        raise LayerprobeError(f"unknown --mode '{config.mode}' (mixed or pretrain-finetune)")
    if min(config.layers, config.width, config.heads, config.steps, config.batch) < 1 or config.lr <= 0:
        raise LayerprobeError("--layers, --width, --heads, --steps, --batch and --lr must be positive")


def new_model(config: RunConfig, vocab: Vocab, seed: int | None = None):
    """The run's architecture with fresh random weights (the trained model's untrained twin)."""
    return build_model(config.arch, len(vocab), config.layers, config.width, config.heads, config.max_len(),
                       rotary=config.rotary, seed=config.seed if seed is None else seed, canon=config.canon)


def _mixed_batches(bios_part: list, qa_part: list, batch: int, seed: int):
    """Half biographies, half QA documents in every batch (mixed training)."""
    def batch_fn(step: int) -> Batch:
        rng = step_rng(seed, step)
        half = batch // 2
        docs = [bios_part[i] for i in rng.integers(len(bios_part), size=batch - half)]
        docs += [qa_part[i] for i in rng.integers(len(qa_part), size=half)]
        return pad(docs)
    return batch_fn


def train_run(config: RunConfig, out_dir: Path, curve_dir: Path, device: str = "cpu", progress: bool = True) -> LoadedModel:
    """Train (or resume, or just load) the run in `out_dir`; curves go to curve_dir/train_<name>.csv."""
    validate(config)
    vocab = config.vocab()
    model = new_model(config, vocab).to(device)  # bad shapes fail here, before anything is written
    population = config.population() if config.world == "bios" else None
    saved = out_dir / "run.json"
    if saved.exists() and RunConfig.load(saved) != config:
        raise LayerprobeError(f"{out_dir} holds a run with another configuration: use another --out or delete it")
    name = out_dir.name
    if parallel.is_main():  # under a launcher the other processes only help train
        out_dir.mkdir(parents=True, exist_ok=True)
        config.save(saved)
        vocab.save(out_dir / "vocab.json")
        print(f"{name}: {n_parameters(model):,} parameters, {config.steps} steps of {config.batch} sequences")
    if config.world == "cfg":
        batch_fn = cfg_batches(config.grammar_(), vocab, config.batch, config.seed)
        train(model, batch_fn, config.steps, lr=config.lr, out_dir=out_dir,
              curve_csv=curve_dir / f"train_{name}.csv", desc=name, progress=progress)
        return wrap(model, vocab, name)
    biographies = bios_docs(vocab, population, config.augment, config.multi, config.seed)
    if config.mode == "mixed":
        questions = qa_docs(vocab, population, population.qa_train, answer_only=False)
        batch_fn = _mixed_batches(biographies, questions, config.batch, config.seed)
        train(model, batch_fn, config.steps, lr=config.lr, out_dir=out_dir,
              curve_csv=curve_dir / f"train_{name}.csv", desc=name, progress=progress)
        return wrap(model, vocab, name)
    train(model, corpus_batches(biographies, config.batch, config.seed), config.steps, lr=config.lr,
          out_dir=out_dir / "pretrain", curve_csv=curve_dir / f"train_{name}-pretrain.csv",
          desc=f"{name} pretrain", run=f"{name}-pretrain", progress=progress)
    questions = qa_docs(vocab, population, population.qa_train, answer_only=True)
    train(model, corpus_batches(questions, config.batch, config.seed + 1), config.finetune_steps, lr=config.lr / 3,
          out_dir=out_dir, curve_csv=curve_dir / f"train_{name}.csv", desc=f"{name} finetune", progress=progress)
    return wrap(model, vocab, name)


def load_run(out_dir: str | Path, device: str = "cpu") -> tuple[RunConfig, LoadedModel]:
    """The run's configuration and final model; an unfinished run gives its last checkpoint,
    named `<run>-step<k>` so its rows never mix with the finished run's."""
    out_dir = Path(out_dir)
    if not (out_dir / "run.json").exists():
        raise LayerprobeError(f"{out_dir} is not a training run (no run.json): train it with train_synthetic.py")
    config = RunConfig.load(out_dir / "run.json")
    checkpoint = out_dir / "checkpoint.pt"
    if (out_dir / "model" / "config.json").exists() or not checkpoint.exists():
        return config, load_trained(out_dir, device=device)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    print(f"warning: {out_dir} is unfinished: using its checkpoint at step {state['step']} of {state['steps']}")
    vocab = Vocab.load(out_dir / "vocab.json")
    model = new_model(config, vocab)
    model.load_state_dict(state["model"])
    model.requires_grad_(False)
    return config, wrap(model.to(device), vocab, f"{out_dir.name}-step{state['step']}")


def random_twin(config: RunConfig, lm: LoadedModel) -> LoadedModel:
    """A randomly initialised model of the same shape: the baseline that shows what training added."""
    model = new_model(config, lm.tokenizer, seed=int(np.random.default_rng(config.seed).integers(1 << 30)))
    model.requires_grad_(False)
    return wrap(model.to(lm.device), lm.tokenizer, f"{lm.name}-random")
