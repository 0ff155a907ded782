"""A training run on a synthetic world: its configuration, its data, its stages, and reloading it.

`out/runs/<name>/` holds `run.json` (the configuration, which also regenerates the world: the
grammar or the population, from the seed), `vocab.json`, `model/` (final weights) and the
checkpoints of each stage. bioS `pretrain-finetune` runs two stages: `pretrain/` on biographies,
then the run folder itself fine-tuned on the QA-train people's questions (loss on answers only).
`mixed` trains once on half biographies and half QA-train questions per batch. A part-3.2 run
(`finetune` other than "qa") fine-tunes on its manipulation tasks on top of a biographies-only
pretraining that every run of the same pretraining settings shares: the sibling folder
`pretrain-<name>/` (with `pretrain.json`, its settings, checked on reuse).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from layerprobe import parallel
from layerprobe.errors import DataError, LayerprobeError
from layerprobe.models import LoadedModel
from layerprobe.results import ResultsFile, atomic_write_text, wilson_interval
from layerprobe.synthetic import bios
from layerprobe.synthetic.cfg import Grammar, get_grammar
from layerprobe.synthetic.data import (
    FINETUNES, Batch, bios_docs, cfg_batches, cfg_vocab, corpus_batches, finetune_tasks, pad, qa_docs, step_rng,
)
from layerprobe.synthetic.evaluate import cfg_generation
from layerprobe.synthetic.train import (
    TrainingClock, build_model, load_trained, n_parameters, save_model, train, wrap,
)
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
    grammar: str = "cfg3b"  # cfg: a name of cfg.GRAMMARS
    corrupted: float = 0.0  # cfg: share of training strings corrupted (cfg.corrupt)
    people: int = 400  # bios
    mode: str = "mixed"  # bios: mixed | pretrain-finetune
    augment: bool = False  # bios: multi + permute + fullname
    prose: str = "bioS"  # bios: bioS (5 templates per attribute) or bioR (25, random sentence order)
    celebrities: float = 0.0  # bios: share of people augmented and QA-trained (0: everyone as usual)
    multi: int = 5
    finetune_steps: int = 300  # bios pretrain-finetune
    canon: str = ""  # Canon layers, a subset of ABCD (layerprobe.synthetic.canon)
    finetune: str = "qa"  # bios pretrain-finetune: qa (part 3.1) or a part-3.2 condition of data.FINETUNES
    lora: int = 0  # bios pretrain-finetune: LoRA rank of the fine-tuning (0: full fine-tuning)

    def name(self) -> str:
        position = ("" if self.rotary else "-abs") + (f"-canon{self.canon}" if self.canon else "")
        if self.world == "cfg":
            noise = f"-corrupt{self.corrupted:g}" if self.corrupted else ""
            return f"cfg-{self.grammar}-{self.arch}{position}{noise}"
        task = "" if self.finetune == "qa" else f"-{self.finetune}"
        lora = f"-lora{self.lora}" if self.lora else ""
        prose = ("" if self.prose == "bioS" else f"-{self.prose}") + (f"-celeb{self.celebrities:g}" if self.celebrities else "")
        return f"bios{prose}-{self.mode}-{'aug' if self.augment else 'noaug'}-{self.arch}{position}{task}{lora}"

    def pretraining(self) -> dict:
        """The settings that determine a pretrain-finetune run's biographies-only stage."""
        return {k: v for k, v in asdict(self).items() if k not in ("finetune", "finetune_steps", "lora")}

    def pretrain_dir(self, out_dir: Path) -> Path:
        """Where the biographies-only stage lives: inside a part-3.1 run, shared beside part-3.2 runs."""
        if self.finetune == "qa" and not self.lora:
            return out_dir / "pretrain"
        return out_dir.parent / f"pretrain-{replace(self, finetune='qa', lora=0).name()}"

    def max_len(self) -> int:
        return self.grammar_().length_range()[1] + 2 if self.world == "cfg" else 128

    def grammar_(self) -> Grammar:
        return get_grammar(self.grammar)

    def population(self) -> bios.Population:
        return bios.make_population(self.people, seed=self.seed)

    def vocab(self) -> Vocab:
        return cfg_vocab(self.grammar_()) if self.world == "cfg" else bios.build_vocab(self.prose)

    def qa_splits(self, population: bios.Population) -> dict[str, list[int]]:
        """The QA splits: train and test halves, and with celebrities the minority (never QA-trained or
        augmented) beside the celebrities' two halves."""
        if not self.celebrities:
            return {"train": population.qa_train, "test": population.qa_test}
        stars = set(bios.celebrities(population, self.celebrities))
        return {"train": [i for i in population.qa_train if i in stars], "test": [i for i in population.qa_test if i in stars],
                "minority": [i for i in range(len(population.people)) if i not in stars]}

    def condition(self) -> str:
        """The bioS training condition as the CSVs name it, e.g. "mixed/aug" or "pretrain-finetune/aug/dual"."""
        task = "" if self.finetune == "qa" else f"/{self.finetune}"
        lora = f"/lora{self.lora}" if self.lora else ""
        return f"{self.mode}/{'aug' if self.augment else 'noaug'}{task}{lora}"

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


WORLD_DEFAULTS: dict[str, dict] = {
    "cfg": dict(grammar="cfg3b", layers=4, width=64, heads=4, steps=2400, batch=16, lr=3e-3),
    "bios": dict(people=200, layers=4, width=64, heads=4, steps=1500, batch=32, lr=3e-3),
}
"""Each world's default size where it differs from RunConfig's field defaults. cfg: the paper's cfg3b at the
CPU size that learnt fastest per CPU second of those measured; it does not reach the paper's accuracy
(README, Physics of Language Models part 1: the learning curve and what > 0.9 would take). bios: 200
people, a 0.34M-parameter Llama, 1500 steps of 16 biographies + 16 questions (120 biographies per person),
lr 3e-3: mixed --augment reaches 90.7% out-of-distribution QA, 12.7% without (README, Physics part 3.1)."""


def default_config(world: str) -> RunConfig:
    """The default run of a world (train_synthetic.py without size flags)."""
    return RunConfig(world=world, **WORLD_DEFAULTS.get(world, {}))


def validate(config: RunConfig) -> None:
    if config.world not in ("cfg", "bios"):
        raise LayerprobeError(f"unknown world '{config.world}' (cfg or bios)")
    if config.mode not in ("mixed", "pretrain-finetune"):
        raise LayerprobeError(f"unknown --mode '{config.mode}' (mixed or pretrain-finetune)")
    if config.prose not in ("bioS", "bioR"):
        raise LayerprobeError(f"unknown --prose '{config.prose}' (bioS or bioR)")
    if config.celebrities and (config.world != "bios" or not config.augment or not 0 < config.celebrities < 1):
        raise LayerprobeError("--celebrities needs --world bios --augment and a share between 0 and 1")
    if config.finetune not in FINETUNES:
        raise LayerprobeError(f"unknown --finetune '{config.finetune}' ({', '.join(FINETUNES)})")
    if (config.finetune != "qa" or config.lora) and (config.world != "bios" or config.mode != "pretrain-finetune"):
        raise LayerprobeError("--finetune and --lora need --world bios --mode pretrain-finetune")
    if config.lora < 0:
        raise LayerprobeError("--lora must be a rank >= 1, or 0 for full fine-tuning")
    if not 0 <= config.corrupted <= 1:
        raise LayerprobeError("--corrupted must be a share between 0 and 1")
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


CURVE_SAMPLES = 50
"""train_synthetic.py's default number of strings graded at each checkpoint of a cfg run's learning curve."""


def cfg_curve_grader(model: torch.nn.Module, config: RunConfig, vocab: Vocab, results: ResultsFile, name: str,
                     samples: int) -> Callable[[int], None]:
    """`train`'s checkpoint hook for a cfg run's learning curve: generation accuracy from <bos> (the share of
    `samples` strings, sampled at temperature 1, that the grammar accepts) with a Wilson interval, and the
    training CPU seconds so far (this process's CPU time less the grading's, plus what an interrupted earlier
    call had recorded)."""
    grammar = config.grammar_()
    clock = TrainingClock(results.frame)

    def grade_step(step: int) -> None:
        unit = dict(model=name, task="cfg-curve", subtask=f"{config.grammar}/step={step}", method="sample")
        if results.done(**unit):
            return
        train_cpu = clock.seconds()
        with clock.grading():
            accepted = cfg_generation(wrap(model, vocab, name), grammar, vocab, samples, 0, config.seed).accepted
            low, high = wilson_interval(accepted.sum(), len(accepted))
            results.add([dict(unit, language="", layer=-1, n_layers=config.layers, metric="accuracy",
                              value=float(accepted.mean()), n_items=len(accepted), ci_low=float(low),
                              ci_high=float(high), step=step, train_cpu_s=round(train_cpu, 1))])
    return grade_step


def train_run(config: RunConfig, out_dir: Path, curve_dir: Path, device: str = "cpu", progress: bool = True,
              curve_samples: int = 0) -> LoadedModel:
    """Train (or resume, or just load) the run in `out_dir`; curves go to curve_dir/train_<name>.csv.

    `curve_samples` > 0 (cfg): grade every checkpoint's generation accuracy on that many samples, into
    curve_dir/cfg-curve_<name>.csv (`cfg_curve_grader`)."""
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
        batch_fn = cfg_batches(config.grammar_(), vocab, config.batch, config.seed, config.corrupted)
        grader = (cfg_curve_grader(model, config, vocab, ResultsFile(curve_dir / f"cfg-curve_{name}.csv"), name,
                                   curve_samples) if curve_samples else None)
        train(model, batch_fn, config.steps, lr=config.lr, out_dir=out_dir,
              curve_csv=curve_dir / f"train_{name}.csv", desc=name, progress=progress, on_checkpoint=grader)
        return wrap(model, vocab, name)
    splits = config.qa_splits(population)
    stars = bios.celebrities(population, config.celebrities) if config.celebrities else None
    biographies = bios_docs(vocab, population, config.augment, config.multi, config.seed, config.prose, only=stars)
    if config.mode == "mixed":
        questions = qa_docs(vocab, population, splits["train"], answer_only=False)
        batch_fn = _mixed_batches(biographies, questions, config.batch, config.seed)
        train(model, batch_fn, config.steps, lr=config.lr, out_dir=out_dir,
              curve_csv=curve_dir / f"train_{name}.csv", desc=name, progress=progress)
        return wrap(model, vocab, name)
    pretrain_dir = config.pretrain_dir(out_dir)
    shared = pretrain_dir.parent != out_dir
    stage = pretrain_dir.name if shared else f"{name}-pretrain"
    if shared and parallel.is_main():
        _claim_pretraining(config, pretrain_dir)
    train(model, corpus_batches(biographies, config.batch, config.seed), config.steps, lr=config.lr,
          out_dir=pretrain_dir, curve_csv=curve_dir / f"train_{stage}.csv", desc=stage, run=stage, progress=progress)
    questions = qa_docs(vocab, population, splits["train"], answer_only=True, tasks=finetune_tasks(config.finetune))
    tuned = with_lora(model, config.lora) if config.lora else model
    train(tuned, corpus_batches(questions, config.batch, config.seed + 1), config.finetune_steps,
          lr=config.lr if config.lora else config.lr / 3, out_dir=out_dir, curve_csv=curve_dir / f"train_{name}.csv",
          desc=f"{name} finetune", progress=progress)
    if config.lora:  # model/ must load as a plain model: merge the adapters into the weights
        model = tuned.merge_and_unload()
        if parallel.is_main():
            save_model(model, out_dir / "model")
    return wrap(model, vocab, name)


EMBEDDINGS = {"llama": "embed_tokens", "gpt_neox": "embed_in", "gpt2": "wte"}


def with_lora(model, rank: int, targets: str | list[str] | None = None):
    """The model with peft LoRA adapters of `rank` (alpha = 2 * rank) on `targets` (peft's module names, or
    "all-linear": every attention and MLP projection, not the output head), by default on peft's default
    modules of its architecture (Llama: q_proj and v_proj) and on the token embeddings; everything else frozen."""
    from peft import LoraConfig, get_peft_model

    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    if targets is None:
        kind = model.config.model_type
        targets = sorted(DEFAULTS[kind]) + [EMBEDDINGS[kind]]
    return get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets))


def _claim_pretraining(config: RunConfig, folder: Path) -> None:
    """Record the shared pretraining's settings, or refuse a folder that holds other settings."""
    saved = folder / "pretrain.json"
    if saved.exists():
        if RunConfig(**json.loads(saved.read_text(encoding="utf-8"))).pretraining() != config.pretraining():  # newer fields: defaults
            raise LayerprobeError(f"{folder} holds a pretraining with other settings: use another --out or delete it")
        return
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, json.dumps(config.pretraining(), indent=1))


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
    if config.lora:  # the checkpoint of a LoRA fine-tuning holds the adapters: load them, then merge
        model = with_lora(model, config.lora)
        model.load_state_dict(state["model"])
        model = model.merge_and_unload()
    else:
        model.load_state_dict(state["model"])
    model.requires_grad_(False)
    return config, wrap(model.to(device), vocab, f"{out_dir.name}-step{state['step']}")


def random_twin(config: RunConfig, lm: LoadedModel) -> LoadedModel:
    """A randomly initialised model of the same shape: the baseline that shows what training added."""
    model = new_model(config, lm.tokenizer, seed=int(np.random.default_rng(config.seed).integers(1 << 30)))
    model.requires_grad_(False)
    return wrap(model.to(lm.device), lm.tokenizer, f"{lm.name}-random")
