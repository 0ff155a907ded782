"""Memory planning before any weights load: what a model and the engine will need, and on which devices.

`plan_memory("llama-70b", "auto", "float16")` builds the model on the meta device (accelerate's
`init_empty_weights`: no weights, no download; the architecture numbers of the registry's aliases are
stored in `models.REGISTRY`), sizes its modules with `compute_module_sizes`, and places them with
`get_balanced_memory` + `infer_auto_device_map` after reserving the engine's peak on each device:

- activations of one block on a batch of `batch_tokens` tokens (hidden states, MLP, the packed
  [S, S] mask and, in case the attention kernel materialises them, the [heads, S, S] scores), on
  every device that runs blocks;
- the captured states (fp32, one row per token at most) of the layers a device runs, and on the
  head's device all L+1 layers twice (the list and its stack);
- the head: an fp32 copy of the final norm and unembedding when the model is in half precision,
  a bf16 copy for the mixed/bf16 heads, and two fp32 logit chunks (logits and log-softmax);
- CUDA_OVERHEAD per GPU (CUDA context, allocator slack).

The device map it returns is the one `load_model` loads with, so the plan is what runs. When nothing
fits, `MemoryPlan.check` raises a one-line `LayerprobeError` before any weights load.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import torch

from layerprobe.engine import DEFAULT_BATCH_TOKENS, LOGIT_CHUNK_BYTES
from layerprobe.errors import LayerprobeError
from layerprobe.head import CORRECTION_RANK
from layerprobe.models import REGISTRY, blocks_path, default_device, model_location, register_canon, resolve_dtype

GIB = 2**30
CUDA_OVERHEAD = 1 * GIB
"""Reserved on every GPU for the CUDA context and the caching allocator's slack."""


def model_config(name: str):
    """The model's config without its weights: stored numbers for aliases, config.json for folders and hub ids."""
    from transformers import AutoConfig

    register_canon()  # a folder may hold a Canon model (layerprobe.synthetic.canon)
    source = REGISTRY.get(name)
    if source is not None:
        numbers = dict(source.config)
        return AutoConfig.for_model(numbers.pop("model_type"), **numbers)
    location = model_location(name)
    try:
        return AutoConfig.from_pretrained(location)
    except OSError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise LayerprobeError(f"could not read the config of '{name}' to plan memory (no network or no such model): {first}") from None


@dataclass(frozen=True)
class EngineNeeds:
    """The engine's peak in bytes, by part (module docstring)."""

    activations: int
    states_per_layer: int
    head: int


def engine_needs(config, dtype: torch.dtype, batch_tokens: int = DEFAULT_BATCH_TOKENS) -> EngineNeeds:
    """Upper bounds of the engine's buffers for a forward of `batch_tokens` tokens (SmolLM2 on CPU: 0.7 GiB
    planned, 0.45 GiB measured above the model by bench/bench_engine.py)."""
    d = config.hidden_size
    ffn = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * d
    heads = config.num_attention_heads
    vocab = config.vocab_size
    size = torch.finfo(dtype).bits // 8
    tokens = batch_tokens
    activations = size * tokens * (8 * d + 3 * ffn) + size * tokens * tokens * (1 + heads)
    fp32_copy = 0 if dtype == torch.float32 else 4 * vocab * d
    logit_chunk = min(LOGIT_CHUNK_BYTES, 4 * tokens * vocab)
    head = fp32_copy + 2 * vocab * (d + CORRECTION_RANK) + 2 * logit_chunk
    return EngineNeeds(activations, 4 * tokens * d, head)


@dataclass
class DeviceUse:
    device: str
    capacity: int
    weights: int
    engine: int
    layers: int

    @property
    def total(self) -> int:
        return self.weights + self.engine


@dataclass
class MemoryPlan:
    model: str
    dtype: torch.dtype
    weights: int
    needs: EngineNeeds
    n_layers: int
    devices: list[DeviceUse] = field(default_factory=list)
    device_map: dict[str, int | str] | None = None
    problem: str | None = None  # why it does not fit; None when it does

    @property
    def fits(self) -> bool:
        return self.problem is None

    @property
    def engine(self) -> int:
        """The engine's peak with everything on one device (per device: `devices`)."""
        states = 2 * (self.n_layers + 1) * self.needs.states_per_layer
        return self.needs.activations + self.needs.head + states

    def summary(self) -> str:
        lines = [f"memory plan: {self.model} in {_name(self.dtype)}: weights {_size(self.weights)} + engine "
                 f"peak {_size(self.engine)}"]
        for use in self.devices:
            lines.append(f"  {use.device}: {use.layers} blocks, weights {_size(use.weights)} + engine "
                         f"{_size(use.engine)} = {_size(use.total)} of {_size(use.capacity)} free")
        return "\n".join(lines)

    def check(self) -> None:
        """One-line error when the plan does not fit."""
        if self.problem:
            raise LayerprobeError(f"{self.model} in {_name(self.dtype)} does not fit: {self.problem}")


def _size(n_bytes: float) -> str:
    return f"{n_bytes / GIB:.1f} GiB" if n_bytes >= GIB / 10 else f"{n_bytes / 2**20:.1f} MiB"


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _device_name(device: int | str) -> str:
    return f"cuda:{device}" if isinstance(device, int) else str(device)


def _contains(module: str, inner: str) -> bool:
    """Whether device-map entry `module` covers the module named `inner` ("" covers everything)."""
    return module == "" or inner == module or inner.startswith(module + ".")


def plan_memory(name: str, device: str | None = None, dtype: str | torch.dtype | None = None,
                memory: dict[int | str, int] | None = None, batch_tokens: int = DEFAULT_BATCH_TOKENS) -> MemoryPlan:
    """Plan a load on `device` ("cpu", "cuda", "cuda:1" or "auto"); `memory` (device -> free bytes, GPUs
    as integers, "cpu") replaces this machine's free memory, to plan for another box or to test."""
    from accelerate import init_empty_weights
    from accelerate.utils import compute_module_sizes
    from transformers import AutoModelForCausalLM

    device = device or default_device()
    torch_dtype = resolve_dtype(dtype, "cpu" if device == "cpu" else "cuda")
    config = model_config(name)
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    model.tie_weights()  # not done on the meta device by itself: tied weights would count twice
    sizes = compute_module_sizes(model, dtype=torch_dtype)
    plan = MemoryPlan(name, torch_dtype, sizes[""], engine_needs(config, torch_dtype, batch_tokens),
                      config.num_hidden_layers)
    capacity = _capacity(device, memory)
    layout = _Layout(model, sizes, plan.needs, plan.n_layers, blocks_path(config.model_type), capacity)
    if device != "auto":
        maps = [{"": next(iter(capacity))}]
    else:
        gpus = sorted(d for d in capacity if isinstance(d, int))
        maps = (layout.device_map(head, balanced) for head in reversed(gpus or [None]) for balanced in (True, False))
    first = None
    for device_map in maps:
        uses = layout.usage(device_map)
        unplaced = sum(sizes[n] for n, d in device_map.items() if d not in capacity)
        candidate = (device_map, [use for use in uses.values() if use.weights or use.engine], unplaced)
        first = first or candidate
        if not unplaced and all(use.total <= use.capacity for use in uses.values()):
            plan.device_map, plan.devices = device_map, candidate[1]
            return plan
    plan.device_map, plan.devices, unplaced = first
    where = ", ".join(f"{_device_name(d)} {_size(c)}" for d, c in capacity.items()) or "no device"
    plan.problem = (f"needs about {_size(plan.weights + plan.engine)} (weights {_size(plan.weights)} + "
                    f"engine {_size(plan.engine)}), free: {where}")
    if unplaced:
        plan.problem += f" ({_size(unplaced)} of weights would need disk offload, which layerprobe does not use)"
    return plan


def _capacity(device: str, memory: dict[int | str, int] | None) -> dict[int | str, int]:
    """Free bytes per device the plan may use: `memory` as given, else this machine's (accelerate's count)."""
    from accelerate.utils import get_max_memory

    if memory is not None:
        if device != "auto" and len(memory) != 1:
            raise ValueError("a single-device plan takes the memory of one device")
        return dict(memory)
    free = get_max_memory()
    if device == "auto":
        return free
    if device == "cpu":
        return {"cpu": free["cpu"]}
    index = torch.device(device).index or 0
    if index not in free:
        raise LayerprobeError(f"device '{device}' is not available on this machine")
    return {index: free[index]}


class _Layout:
    """Device maps from accelerate, and what each device then holds (weights + engine)."""

    def __init__(self, model, sizes: dict[str, int], needs: EngineNeeds, n_layers: int, blocks_prefix: str,
                 capacity: dict[int | str, int]):
        self.model, self.sizes, self.needs, self.n_layers = model, sizes, needs, n_layers
        self.blocks_prefix, self.capacity = blocks_prefix, capacity
        self.head_name = next(n for n, m in model.named_modules() if m is model.get_output_embeddings())
        self.no_split = list(getattr(model, "_no_split_modules", None) or [])
        logging.getLogger("accelerate.utils.modeling").setLevel(logging.ERROR)  # "Device 0 is not available"

    def device_map(self, head: int | None, balanced: bool) -> dict[str, int | str]:
        """accelerate's map over the GPUs up to `head`, which also keeps the lens head and all states: the
        same share of the blocks on each GPU (`balanced`, as transformers' device_map="auto"), or filled in
        order (tight fits such as 70B in fp16 on 2 x 80 GiB)."""
        from accelerate.utils import get_balanced_memory, infer_auto_device_map

        gpus = [d for d in self.capacity if isinstance(d, int)]
        share = (self.n_layers + 1) * self.needs.states_per_layer // max(1, len(gpus))
        budgets = {}
        for d, free in self.capacity.items():
            reserve = self.needs.activations + share + (CUDA_OVERHEAD if isinstance(d, int) else 0)
            if d == head:
                reserve += self.needs.head + 2 * (self.n_layers + 1) * self.needs.states_per_layer
            budgets[d] = 0 if head is not None and isinstance(d, int) and d > head else max(0, free - reserve)
        if balanced and sum(budgets[d] > 0 for d in gpus) > 1:
            budgets = get_balanced_memory(self.model, max_memory=budgets, no_split_module_classes=self.no_split,
                                          dtype=next(self.model.parameters()).dtype)
        with warnings.catch_warnings():  # about offloaded buffers: a map with offload is refused anyway
            warnings.simplefilter("ignore")
            return dict(infer_auto_device_map(self.model, max_memory=budgets, no_split_module_classes=self.no_split,
                                              dtype=next(self.model.parameters()).dtype))

    def usage(self, device_map: dict[str, int | str]) -> dict[int | str, DeviceUse]:
        """Weights and engine bytes per device under one device map."""
        uses = {d: DeviceUse(_device_name(d), free, 0, 0, 0) for d, free in self.capacity.items()}
        head_device = None
        for name, device in device_map.items():
            if device not in uses:
                continue
            uses[device].weights += self.sizes[name]
            if _contains(name, self.blocks_prefix):
                uses[device].layers += self.n_layers
            elif name.startswith(self.blocks_prefix + "."):
                uses[device].layers += 1
            if _contains(name, self.head_name):
                head_device = device
        for device, use in uses.items():
            if use.layers:
                use.engine += self.needs.activations + use.layers * self.needs.states_per_layer
            if isinstance(device, int) and (use.layers or use.weights):
                use.engine += CUDA_OVERHEAD
        if head_device is not None:  # the other devices' states are moved here, then all are stacked
            use = uses[head_device]
            use.engine += (2 * (self.n_layers + 1) - use.layers) * self.needs.states_per_layer + self.needs.head
        return uses
