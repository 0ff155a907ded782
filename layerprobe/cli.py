"""What every top-level script shares: the common flags and the one-line error handling."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from layerprobe.errors import LayerprobeError
from layerprobe.head import HEAD_DTYPES
from layerprobe.models import check_model

DEFAULT_MODEL = "smollm2-135m"


def add_model_args(parser: argparse.ArgumentParser, repeat_model: bool = True) -> None:
    """--model (repeatable), --device, --dtype, --batch-size: how to load and run a model."""
    if repeat_model:
        parser.add_argument("--model", action="append", default=None,
                            help=f"alias, Hugging Face id or local directory; repeat to sweep sizes (default {DEFAULT_MODEL})")
    else:
        parser.add_argument("--model", default=DEFAULT_MODEL, help=f"alias, Hugging Face id or local directory (default {DEFAULT_MODEL})")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 or auto (default: cuda if present, else cpu)")
    parser.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"],
                        help="forward dtype (default: float16 on GPU, float32 on CPU)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="items per forward pass (default: automatic by token budget, halved on out-of-memory)")


def add_head_args(parser: argparse.ArgumentParser) -> None:
    """--head-dtype: the precision of the lens head that scores candidates (`layerprobe.head`)."""
    parser.add_argument("--head-dtype", default="float32", choices=HEAD_DTYPES,
                        help="lens head precision: float32 (default, exact), mixed (bf16 logits find the top "
                             "tokens, which and the targets are recomputed in fp32; ~0.02 nats, faster with fast bf16) "
                             "or bfloat16 (fastest; over a nat off, flips decisions)")


def add_run_args(parser: argparse.ArgumentParser, out_default: str = "out/data") -> None:
    """--limit, --seed, --out: how much to run and where to write."""
    parser.add_argument("--limit", type=int, default=None, help="use at most N items per subtask")
    parser.add_argument("--seed", type=int, default=0, help="seed for data generation, folds and sampling")
    parser.add_argument("--out", default=out_default, help=f"output folder (default {out_default})")


def models_from_args(args: argparse.Namespace) -> list[str]:
    """The --model values (default DEFAULT_MODEL), every one checked (`check_model`) before any loads:
    a bad name late in a sweep fails before the first model has written anything."""
    models = args.model if isinstance(args.model, list) else [m for m in [args.model] if m]
    models = models or [DEFAULT_MODEL]
    for model in models:
        check_model(model)
    return models


def run(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> None:
    """Run a script's main: user errors become one line on stderr and exit code 2."""
    try:
        main(argv)
    except LayerprobeError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished units are saved; run the same command again to resume", file=sys.stderr)
        sys.exit(130)
