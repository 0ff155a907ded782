"""iGSM training runs: their configuration, training, grading, and the depth-vs-width budget.

`out/runs/<name>/` holds `igsm_run.json` (the configuration), `vocab.json`, `model/` and the
checkpoint of `train` (so a rerun resumes); the training curve goes to `<data>/train_<name>.csv`
the graded accuracy to `<data>/igsm-accuracy_<name>.csv`, and the learning curve (greedy accuracy by
number of operations on training-template problems at every checkpoint, with the training CPU seconds
so far) to `<data>/igsm-curve_<name>.csv`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from layerprobe import parallel
from layerprobe.errors import DataError, LayerprobeError
from layerprobe.models import LoadedModel
from layerprobe.results import ResultsFile, atomic_write_text
from layerprobe.synthetic import igsm, igsm_lm
from layerprobe.synthetic.train import TrainingClock, build_model, load_trained, n_parameters, train, wrap

RUN_FILE = "igsm_run.json"
FULL_FINETUNE_LR_FACTOR = 1 / 3  # full fine-tuning moves every weight: a third of the given lr (igsm_finetune)


@dataclass(frozen=True)
class IGSMRun:
    arch: str = "llama"
    layers: int = 4
    width: int = 128
    heads: int = 4
    steps: int = 24000  # 28 minutes on 2 threads; still rising at 16,000 (README, iGSM part 2.1)
    batch: int = 8  # small batches, many steps: per CPU second the lookups form sooner than with 32
    lr: float = 1e-3
    seed: int = 0
    retry: float = 0.0  # probability of a retry step (part 2.2)
    preset: str = "cpu"  # igsm.PRESETS key
    canon: str = "A"  # Canon layers, a subset of ABCD (layerprobe.synthetic.canon); A: the text lookups form
    curriculum: float = 0.25  # share of the steps (the first ones) on the easiest problems only
    curriculum_ops: int = 1  # the curriculum draws curriculum_ops..1 operations (0: also lookups of a constant)
    mask_mistakes: bool = False  # no loss on a retry's mistake tokens (its [BACK] stays trained)
    detour: float = 0.0  # probability of an untrained detour step before a solution step (igsm.solution_tokens)
    detour_body: bool = False  # train a detour's step but its parameter's name (igsm.untrained_mask)
    curve_every: int = 0  # steps between checkpoints graded for the learning curve (0: steps // 10)
    finetune: str = ""  # a fine-tuning of run `start` ("full" or "lora<rank>"; igsm_finetune), "" when trained from scratch
    start: str = ""  # the name of the run this one fine-tunes

    def name(self) -> str:
        if self.finetune:
            return (f"{self.start}-ft{self.finetune}-retry{self.retry:g}-s{self.steps}{'-mask' if self.mask_mistakes else ''}"
                    f"{self.settings_suffix()}")
        canon = f"-canon{self.canon}" if self.canon else ""
        lookups = "-lookups" if self.curriculum and self.curriculum_ops == 0 else ""
        extra = ((f"-c{self.curriculum:g}{lookups}" if self.curriculum else "") + ("-mask" if self.mask_mistakes else "")
                 + (f"-detour{self.detour:g}{'-body' if self.detour_body else ''}" if self.detour else ""))
        seed = f"-seed{self.seed}" if self.seed else ""  # seed 0 keeps the names of earlier runs
        return (f"igsm-{self.preset}-{self.arch}{canon}-l{self.layers}w{self.width}-retry{self.retry:g}"
                f"-s{self.steps}{extra}{seed}{self.settings_suffix()}")

    def settings_suffix(self) -> str:
        """Heads, batch and learning rate where they are off their defaults, so that a run with other settings
        never resumes or reloads a default one (default settings keep the names of earlier runs)."""
        defaults = IGSMRun()
        default_lr = defaults.lr * (FULL_FINETUNE_LR_FACTOR if self.finetune == "full" else 1)
        return ((f"-h{self.heads}" if self.heads != defaults.heads else "")
                + (f"-b{self.batch}" if self.batch != defaults.batch else "")
                + (f"-lr{self.lr:.3g}" if not math.isclose(self.lr, default_lr) else ""))

    def condition(self) -> str:
        """How the accuracy CSVs name this run's training condition."""
        finetune = f"ft={self.finetune}/" if self.finetune else ""
        return f"{finetune}retry={self.retry:g}/l{self.layers}w{self.width}"

    def config(self) -> igsm.IGSMConfig:
        if self.preset not in igsm.PRESETS:
            raise LayerprobeError(f"unknown iGSM preset '{self.preset}' ({', '.join(igsm.PRESETS)})")
        return igsm.PRESETS[self.preset]

    def max_len(self) -> int:
        return 320 if self.preset == "cpu" else 1024

    def build(self, vocab_size: int) -> torch.nn.Module:
        return build_model(self.arch, vocab_size, self.layers, self.width, self.heads, self.max_len(), seed=self.seed,
                           canon=self.canon)


def width_for_budget(run: IGSMRun, layers: int, budget: int, vocab_size: int) -> int:
    """The width (a multiple of twice the heads: rotary needs an even head size) whose model with `layers`
    blocks has closest to `budget` parameters."""
    step = 2 * run.heads
    best, best_gap = step, None
    with torch.device("meta"):
        for width in range(step, 4096 + 1, step):
            count = n_parameters(dataclasses.replace(run, layers=layers, width=width).build(vocab_size))
            gap = abs(count - budget)
            if best_gap is None or gap < best_gap:
                best, best_gap = width, gap
            if count > budget:
                break
    return best


CURVE_PROBLEMS = 30
"""Training-template problems per number of operations graded at each checkpoint of the curve."""


def curve_grader(model: torch.nn.Module, run: IGSMRun, data_dir: Path, n_per_ops: int = CURVE_PROBLEMS,
                 splits: Sequence[str] = ("train",), task: str = "igsm-curve", **extra: object) -> Callable[[int], None]:
    """`train`'s checkpoint hook: greedy accuracy by operations at that step on the same problems of each
    split every time, and the teacher-forced accuracy by token kind on the first split's (`token_accuracy`),
    with the training CPU seconds so far (this process's CPU time less the grading's, plus what an
    interrupted earlier call had recorded); rows (with `extra` columns) go to `<data>/<task>_<run>.csv`,
    each step's once."""
    vocab = igsm_lm.make_vocab()
    config = run.config()
    n_problems = n_per_ops * (config.ops[1] - config.ops[0] + 1)
    problems = {split: igsm_lm.eval_problems(config, n_problems, split, seed=run.seed) for split in splits}
    results = ResultsFile(Path(data_dir) / f"{task}_{run.name()}.csv")
    clock = TrainingClock(results.frame)

    def grade_step(step: int) -> None:
        condition = f"{run.condition()}/step={step}"
        if all(results.done(model=run.name(), task=task, subtask=f"{condition}/all", language=split) for split in splits):
            return
        train_cpu = clock.seconds()
        with clock.grading():
            graded = pd.concat([igsm_lm.grade(chosen, igsm_lm.solve(model, vocab, chosen, progress=False), split)
                                for split, chosen in problems.items()])
            kinds = igsm_lm.token_accuracy(model, vocab, problems[splits[0]])
            columns = dict(step=step, train_cpu_s=round(train_cpu, 1), retry=run.retry, **extra)
            results.add(igsm_lm.accuracy_rows(graded, run.name(), condition, run.layers, task=task, **columns)
                        + igsm_lm.token_rows(kinds, run.name(), condition, run.layers, task, **columns))
    return grade_step


CURVE_SKILLS = ("name", "constant value k>=2", "operand letter", "operand order")
"""Skills (igsm_lm.token_kinds) printed with the learning curve: naming a next parameter, a constant's value
where the text holds 2+ constants (the keyed lookup), the operands' letters, a difference's operand order."""


def curve_table(run: IGSMRun, data_dir: Path) -> pd.DataFrame | None:
    """The learning curve to print: per graded step, training CPU seconds, accuracy by operations and overall,
    the share of needed steps written validly, and the teacher-forced ("tf") accuracy of `CURVE_SKILLS`
    (training-template problems). None when `data_dir` holds no curve of the run."""
    path = Path(data_dir) / f"igsm-curve_{run.name()}.csv"
    if not path.exists():
        return None
    frame = pd.read_csv(path)
    frame["part"] = frame["subtask"].str.rsplit("/", n=1).str[-1]
    lookups = frame["part"].isin(["token=constant value k=2", "token=constant value k=3+"])
    frame.loc[lookups, "part"] = "token=constant value k>=2"
    frame = frame[(frame["metric"] == "accuracy") | ((frame["metric"] == "step_share") & (frame["part"] == "all"))
                  | frame["part"].isin([f"token={kind}" for kind in CURVE_SKILLS])]
    frame["column"] = frame["metric"].str.replace("token_accuracy", "tf").str.replace("accuracy", "acc") + " " + frame["part"]
    frame = frame.assign(hits=frame["value"] * frame["n_items"])  # pooled over kinds by their counts
    sums = frame.groupby(["step", "train_cpu_s", "column"])[["hits", "n_items"]].sum()
    table = (sums["hits"] / sums["n_items"]).unstack("column")
    return table.reset_index()


def train_igsm(run: IGSMRun, out_root: Path, data_dir: Path, device: str = "cpu", progress: bool = True) -> LoadedModel:
    """Train (or resume, or reload) a run, grading the learning curve at each checkpoint; returns the trained
    model wrapped for the engine."""
    out = Path(out_root) / run.name()
    vocab = igsm_lm.make_vocab()
    model = run.build(len(vocab)).to(device)
    batches = igsm_lm.batch_fn(vocab, run.config(), run.batch, seed=run.seed, retry_p=run.retry,
                               mask_mistakes=run.mask_mistakes, warmup_steps=round(run.curriculum * run.steps),
                               warmup_min_ops=run.curriculum_ops, detour_p=run.detour,
                               detour_body=run.detour_body)
    every = run.curve_every or max(1, run.steps // 10)
    train(model, batches, steps=run.steps, lr=run.lr, out_dir=out, curve_csv=Path(data_dir) / f"train_{run.name()}.csv",
          desc=run.name(), progress=progress, checkpoint_every=every, log_every=min(every, max(1, run.steps // 100)),
          on_checkpoint=curve_grader(model, run, data_dir))
    if parallel.is_main():
        vocab.save(out / "vocab.json")
        atomic_write_text(out / RUN_FILE, json.dumps(dataclasses.asdict(run), indent=1))
    return wrap(model, vocab, name=run.name())


def load_run(out_dir: Path, device: str = "cpu") -> tuple[IGSMRun, LoadedModel]:
    """A finished run's configuration and model."""
    path = Path(out_dir) / RUN_FILE
    try:
        run = IGSMRun(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise LayerprobeError(f"{out_dir} is not an iGSM run (no {RUN_FILE}): train it with train_igsm.py") from None
    except (ValueError, TypeError) as error:
        raise DataError(path, f"not an iGSM run configuration ({error})") from None
    return run, load_trained(out_dir, name=run.name(), device=device)


def grade_run(lm: LoadedModel, run: IGSMRun, data_dir: Path, n_eval: int, progress: bool = True) -> Path:
    """Greedy-solve `n_eval` train-template and `n_eval` test-template problems, and finish the same problems
    after and without a detour (`igsm_lm.detour_grade`); write the accuracy CSV."""
    path = Path(data_dir) / f"igsm-accuracy_{run.name()}.csv"
    results = ResultsFile(path)
    if results.done(model=run.name(), task="igsm-accuracy"):
        return path
    graded, detoured = [], []
    for split in ("train", "test"):
        problems = igsm_lm.eval_problems(run.config(), n_eval, split, seed=run.seed)
        solutions = igsm_lm.solve(lm.model, lm.tokenizer, problems, progress=progress)
        graded.append(igsm_lm.grade(problems, solutions, split))
        detoured.append(igsm_lm.detour_grade(lm.model, lm.tokenizer, problems, split, seed=run.seed, progress=progress))
    extra = dict(retry=run.retry, layers=run.layers, width=run.width, n_params=n_parameters(lm.model), steps=run.steps)
    rows = (igsm_lm.accuracy_rows(pd.concat(graded), run.name(), run.condition(), run.layers, **extra)
            + igsm_lm.detour_rows(pd.concat(detoured), run.name(), run.condition(), run.layers, **extra))
    results.add(rows)
    return path
