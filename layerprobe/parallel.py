"""Data parallelism over the processes that `torchrun` or `accelerate launch` start (as lm-evaluation-harness does it).

Every process runs the whole script and loads the model. Work that comes in units (the engine's
batches of items, the trace's groups of sequences) is shared out: each process takes a contiguous
share (`share`), runs it with the one engine, and `gather` concatenates the shares in process order
on every process, so the results come back in the original order with no index bookkeeping. A unit
is never cut finer than a single process runs it (a batch stays the batch it is in a 1-process run),
so every number is the one a single process computes with the same threads per process, and the CSV
is the same byte for byte. Decisions that depend on the disk (is this unit already in the CSV, is
this chunk cached) are the main process's (`agree`), so the processes never disagree about what to
run; only the main process writes results and cache entries.

Why accelerate's `PartialState`, `split_between_processes` and `gather_object` rather than bare
torch.distributed: `PartialState` reads what every launcher sets (torchrun, `accelerate launch`,
mpirun), starts the process group with the backend the hardware needs (gloo on CPU, nccl on GPU) and
gives each process its own device; without a launcher it starts nothing and the same three calls are
no-ops, so one process needs no launcher and runs exactly the code it ran before. The same state is
what `accelerate.Accelerator` uses for training.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TypeVar

import torch

T = TypeVar("T")


@functools.cache
def _state():
    from accelerate import PartialState

    # Without cpu=True, accelerate sets up no process group on a machine without a GPU.
    return PartialState(cpu=not torch.cuda.is_available())


def count() -> int:
    """How many processes run this script (1 without a launcher)."""
    return _state().num_processes


def is_main() -> bool:
    """True in the process that writes results, caches and progress bars."""
    return _state().is_main_process


def say(message: str) -> None:
    """Print once, from the main process."""
    if is_main():
        print(message, flush=True)


def device() -> str:
    """This process's device: its own GPU under a launcher ("cuda:<local rank>"), "cuda" or "cpu" alone."""
    if not torch.cuda.is_available():
        return "cpu"
    return str(_state().device) if count() > 1 else "cuda"


def share(units: Sequence[T]) -> list[T]:
    """This process's contiguous share of `units` (earlier processes take one more when they do not divide)."""
    with _state().split_between_processes(list(units)) as mine:
        return list(mine)


def gather(part: list[T]) -> list[T]:
    """Every process's `part`, concatenated in process order, on every process."""
    if count() == 1:
        return part
    from accelerate.utils import gather_object

    return gather_object(part)


def agree(value: T) -> T:
    """The main process's `value`, on every process."""
    if count() == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]
