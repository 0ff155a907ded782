"""Print the memory plan of a model before loading it: weights, the engine's peak, the devices it will use.

    python plan_memory.py --model llama-70b --dtype float16                # this machine, --device auto
    python plan_memory.py --model llama-70b --dtype float16 --gpus 2x80    # a box with 2 GPUs of 80 GiB
    python plan_memory.py --table                                          # 7B/13B/70B fp16 on 1, 2, 8 x 80 GiB

No weights are loaded or downloaded (the aliases' architectures are in the registry). Exits 2 with one
line when the plan does not fit; every script runs the same plan before it loads a model.
"""

from __future__ import annotations

import argparse

from layerprobe.cli import DEFAULT_MODEL, run
from layerprobe.engine import DEFAULT_BATCH_TOKENS
from layerprobe.errors import LayerprobeError
from layerprobe.memory import GIB, MemoryPlan, plan_memory

TABLE_MODELS = ("llama-7b", "llama-13b", "llama-70b")
TABLE_GPUS = (1, 2, 8)


def parse_gpus(text: str) -> dict[int | str, int]:
    """"2x80" -> two GPUs of 80 GiB each."""
    try:
        count, size = text.lower().removesuffix("gib").removesuffix("gb").split("x")
        return {i: int(float(size) * GIB) for i in range(int(count))}
    except ValueError:
        raise LayerprobeError(f"--gpus '{text}': use COUNTxGIB, e.g. 2x80") from None


def table_row(plan: MemoryPlan, gpus: int) -> str:
    used = [use for use in plan.devices if use.weights or use.layers]
    if not plan.fits:
        verdict = "does not fit"
    else:
        busiest = max(use.total for use in used)
        verdict = f"fits on {len(used)}: blocks {'/'.join(str(use.layers) for use in used)}, busiest {busiest / GIB:.1f} GiB"
    return (f"| {plan.model} | {gpus} x 80 GiB | {plan.weights / GIB:.1f} | {plan.engine / GIB:.1f} | "
            f"{(plan.weights + plan.engine) / GIB:.1f} | {verdict} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"alias, Hugging Face id or local folder (default {DEFAULT_MODEL})")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default auto)")
    parser.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"],
                        help="weights dtype (default: float16 on GPU, float32 on CPU)")
    parser.add_argument("--gpus", default=None, help="plan for COUNT GPUs of GIB each (e.g. 8x80) instead of this machine")
    parser.add_argument("--batch-tokens", type=int, default=DEFAULT_BATCH_TOKENS,
                        help=f"tokens per forward the engine's peak is sized for (default {DEFAULT_BATCH_TOKENS})")
    parser.add_argument("--table", action="store_true", help="print the README table (7B/13B/70B, fp16, 1/2/8 x 80 GiB)")
    args = parser.parse_args(argv)
    if args.table:
        print("| model | GPUs | weights GiB | engine peak GiB | total GiB | plan |")
        print("| --- | --- | --- | --- | --- | --- |")
        for model in TABLE_MODELS:
            for gpus in TABLE_GPUS:
                plan = plan_memory(model, "auto", "float16", memory=parse_gpus(f"{gpus}x80"), batch_tokens=args.batch_tokens)
                print(table_row(plan, gpus), flush=True)
        return
    memory = parse_gpus(args.gpus) if args.gpus else None
    plan = plan_memory(args.model, args.device, args.dtype, memory=memory, batch_tokens=args.batch_tokens)
    print(plan.summary())
    plan.check()


if __name__ == "__main__":
    run(main)
