"""Train a small LM from scratch on a synthetic world: a context-free grammar or bioS biographies.

    python train_synthetic.py --world cfg                                   # the paper's cfg3b, Llama 4 x 64
    python train_synthetic.py --world cfg --quick                           # grammar "small": a smoke test
    python train_synthetic.py --world bios --mode mixed --augment
    python train_synthetic.py --world bios --mode pretrain-finetune --no-augment
    python train_synthetic.py --world bios --mode pretrain-finetune --augment --finetune classify-cot  # part 3.2
    python train_synthetic.py --world cfg --layers 12 --width 768 --heads 12 \\
        --steps 100000 --batch 96 --lr 3e-4                                 # the paper's scale, for a GPU

Cost (measured with --threads 1): a step of the cfg default (16 cfg3b strings, ~4.5k tokens) costs 0.25
CPU s at a load of 1, 0.3 CPU s at a load of 10-16, so its 2400 steps are ~12 CPU min plus ~10 s per graded
checkpoint. Up to step 480 (2.7M tokens), the most measured, it generated no accepted string; > 0.9, the
paper's level, was not shown on a CPU (README, Physics of Language Models part 1: what it would take).
The bios default (200 people, 4 x 64, 1500 steps of 32, lr 3e-3) trains in 138 CPU s (164 augmented) and
reaches 90.7% out-of-distribution QA augmented, 12.7% not (README, Physics part 3.1).

The run goes to out/runs/<name>/ (resumable: run the same command again), its training curve to
out/data/train_<name>.csv, a cfg run's generation accuracy at each checkpoint to out/data/cfg-curve_<name>.csv
(figure syn_cfg_curve). Evaluate and probe it with probe_synthetic.py --run out/runs/<name>.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import torch

from layerprobe.cli import run
from layerprobe import parallel
from layerprobe.synthetic.data import FINETUNES
from layerprobe.synthetic.cfg import GRAMMARS
from layerprobe.synthetic.runs import CURVE_SAMPLES, RunConfig, default_config, train_run
from layerprobe.synthetic.script_args import add_canon_arg

QUICK = dict(layers=2, width=64, heads=4, steps=60, batch=16, people=60, finetune_steps=30, grammar="small",
             curve_samples=10)
"""--quick: a smoke-test size (seconds) for scripts/run_all.sh; flags given explicitly still win."""

SIZE_FLAGS = [("layers", int, "transformer blocks"), ("width", int, "hidden size"), ("heads", int, "attention heads"),
              ("steps", int, "training steps"), ("batch", int, "sequences per step"), ("lr", float, "peak learning rate")]
"""Flags whose default depends on the world (runs.WORLD_DEFAULTS)."""


def _default_help(flag: str) -> str:
    """The default of a world-dependent flag, per world where the worlds differ."""
    values = {world: getattr(default_config(world), flag) for world in ("cfg", "bios")}
    if len(set(values.values())) == 1:
        return f"default {values['cfg']}"
    return "default " + ", ".join(f"{value} for {world}" for world, value in values.items())


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The flags; a size flag left out takes its world's default (--quick's with --quick)."""
    defaults = RunConfig(world="cfg")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", required=True, choices=["cfg", "bios"])
    parser.add_argument("--arch", default=defaults.arch, choices=["llama", "gpt2"])
    parser.add_argument("--rotary", dest="rotary", action="store_true", default=True,
                        help="rotary positions (default; with --arch gpt2 this is a GPT-NeoX block)")
    parser.add_argument("--absolute", dest="rotary", action="store_false", help="learned absolute positions (gpt2)")
    for flag, kind, help_text in SIZE_FLAGS:
        parser.add_argument(f"--{flag}", type=kind, default=None, help=f"{help_text} ({_default_help(flag)})")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of the world, the weights and the batches (default %(default)s)")
    parser.add_argument("--grammar", default=None,
                        help=f"cfg: {', '.join(GRAMMARS)} (default {defaults.grammar}; small with --quick)")
    parser.add_argument("--corrupted", type=float, default=defaults.corrupted,
                        help="cfg: share of training strings corrupted, each terminal redrawn with probability "
                             "0.15 (default %(default)s)")
    parser.add_argument("--people", type=int, default=None, help=f"bios: population size (default {default_config('bios').people})")
    parser.add_argument("--mode", default=defaults.mode, choices=["mixed", "pretrain-finetune"])
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=False,
                        help="bios: multiM + permute + fullname biographies (default off: bioS single)")
    parser.add_argument("--prose", default=defaults.prose, choices=["bioS", "bioR"],
                        help="bios: bioS templates, or bioR-like prose (25 templates per attribute, random sentence "
                             "order; an offline stand-in for the paper's LLM rewrite) (default %(default)s)")
    parser.add_argument("--celebrities", type=float, default=defaults.celebrities,
                        help="bios: share of people who get the --augment biographies and the QA training; the "
                             "others (the minority) get one bioS biography and are only evaluated (default %(default)s)")
    parser.add_argument("--multi", type=int, default=defaults.multi, help="bios: M of multiM (default %(default)s)")
    parser.add_argument("--finetune-steps", type=int, default=None,
                        help=f"bios pretrain-finetune: QA fine-tuning steps (default {defaults.finetune_steps})")
    add_canon_arg(parser)
    parser.add_argument("--finetune", default=defaults.finetune, choices=list(FINETUNES),
                        help="bios pretrain-finetune: qa (part 3.1) or a part-3.2 manipulation condition, fine-tuned "
                             "on a biographies-only pretraining shared by every condition (default %(default)s)")
    parser.add_argument("--lora", type=int, default=defaults.lora,
                        help="bios pretrain-finetune: fine-tune LoRA adapters of this rank (peft) instead of every "
                             "weight (default %(default)s: full fine-tuning)")
    parser.add_argument("--curve-samples", type=int, default=None,
                        help=f"cfg: strings sampled from <bos> to grade each checkpoint's generation accuracy, into "
                             f"<data>/cfg-curve_<name>.csv; 0: no curve (default {CURVE_SAMPLES})")
    parser.add_argument("--quick", action="store_true", help="tiny model and few steps: a smoke test")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--out", default=None, help="run folder (default out/runs/<name>)")
    parser.add_argument("--data", default="out/data", help="folder of the training-curve CSV (default %(default)s)")
    args = parser.parse_args(argv)
    world_defaults = asdict(default_config(args.world)) | {"curve_samples": CURVE_SAMPLES} | (QUICK if args.quick else {})
    for name, value in world_defaults.items():
        if getattr(args, name, value) is None:
            setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    values = {name: getattr(args, name) for name in RunConfig.__dataclass_fields__}
    config = RunConfig(**values)
    out = Path(args.out or Path("out/runs") / (config.name() + ("-quick" if args.quick else "")))
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    train_run(config, out, Path(args.data), device=device, curve_samples=args.curve_samples)
    parallel.say(f"trained {out}; next: python probe_synthetic.py --run {out}")


if __name__ == "__main__":
    run(main)
