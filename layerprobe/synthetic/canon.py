"""Canon layers (Physics of Language Models 4.1): short causal mixing of each token with the 3 before it.

A Canon layer is a causal depthwise 1-D convolution of kernel 4 with a residual connection,
h'_t = h_t + sum_{j=0..3} w_j * h_{t-j} (one weight per channel and tap, no bias). It sits at up to
four places in every block of a Llama decoder:

    A  on the attention input (after the input norm)        d channels
    B  on q, k and v (after their projections, before RoPE) d + 2 * kv_dim channels
    C  on the MLP input (after the post-attention norm)      d channels
    D  on the gate and up projections (before SwiGLU)        2 * ffn channels

so a block holds 4 * (d [A] + (d + 2 kv_dim) [B] + d [C] + 2 ffn [D]) Canon parameters (`n_canon_parameters`).
B and D are depthwise, so one convolution over the concatenated q/k/v (gate/up) equals separate ones per
projection, which is how they are applied here: as forward hooks on the projections and norms. The
checkpoint is therefore a plain Llama one plus `canon_*` weights, of its own model type `canon_llama`
(registered with transformers' Auto classes by `register()`, which layerprobe.models calls before it
reads any config), so `from_pretrained`, the engine's block hooks and the lens adapter all see a Llama.

"The 3 tokens before t" are the 3 nearest *earlier positions t may attend to*, read from the attention
mask the model is given: plain causal order without a mask, pad tokens skipped with a 2-D padding mask
(left-padded generation), and a candidate's own tokens then the prompt with the engine's packed 4-D
block masks. With a KV cache (`use_cache=True`, which `generate` uses) each Canon layer also keeps a convolution
state, the inputs of the 3 taps the next token will read, so a cached step costs one token's forward;
a cached step takes one token at a time, and a reordered cache (HF beam search) is not supported.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from layerprobe.errors import LayerprobeError

KERNEL = 4
PLACES = "ABCD"
MODEL_TYPE = "canon_llama"


def canon_letters(text: str) -> str:
    """Normalise a --canon value: any subset of ABCD ("" or "none" for none), in ABCD order."""
    letters = "" if text.lower() == "none" else text.upper()
    unknown = sorted(set(letters) - set(PLACES))
    if unknown or len(set(letters)) != len(letters):
        raise LayerprobeError(f"--canon takes a subset of the letters ABCD without repeats, got '{text}'")
    return "".join(place for place in PLACES if place in letters)


def n_canon_parameters(canon: str, layers: int, d_model: int, kv_dim: int, ffn: int) -> int:
    """Parameters the Canon layers add to a Llama decoder (see the module notes)."""
    channels = {"A": d_model, "B": d_model + 2 * kv_dim, "C": d_model, "D": 2 * ffn}
    return layers * KERNEL * sum(channels[place] for place in canon_letters(canon))


def previous_positions(attention_mask: torch.Tensor | dict | None, batch: int, length: int,
                       device: torch.device) -> torch.Tensor:
    """[B, T, KERNEL] positions that tap j of position t reads: t itself, then the nearest earlier
    positions t may attend to, nearest first; -1 where there is none."""
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril(-1)  # strictly earlier
    if isinstance(attention_mask, dict):
        attention_mask = attention_mask.get("full_attention", next(iter(attention_mask.values())))
    if attention_mask is None:
        visible = causal.expand(batch, length, length)
    elif attention_mask.dim() == 2:  # 1 = token, 0 = padding
        visible = causal & attention_mask.bool()[:, None, :]
    else:  # [B, 1, T, T] boolean (True = may attend) or additive (0 = may attend)
        mask = attention_mask[:, 0, -length:, -length:]
        visible = causal & (mask if mask.dtype == torch.bool else mask == 0)
    keys = torch.arange(length, device=device)
    earlier = torch.where(visible, keys, -1)  # [B, T, T]
    taps = earlier.topk(min(KERNEL - 1, length), dim=-1).values  # the largest visible keys, nearest first
    if taps.shape[-1] < KERNEL - 1:
        taps = nn.functional.pad(taps, (0, KERNEL - 1 - taps.shape[-1]), value=-1)
    return torch.cat([keys.expand(batch, length)[..., None], taps], dim=-1)


class Canon(nn.Module):
    """h + depthwise causal convolution of h over the positions `previous_positions` lists."""

    def __init__(self, channels: int, taps: dict):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, KERNEL))  # [:, j]: the j-th previous token
        self.taps = taps  # shared with the model: {"index": [B, T, KERNEL], "mode": None | "fill" | "step"}
        self.state: torch.Tensor | None = None  # [B, KERNEL - 1, C]: the next token's earlier taps, nearest first
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # as nn.Conv1d(channels, channels, KERNEL, groups=channels) initialises its weight
        bound = 1 / math.sqrt(KERNEL)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        index, mode = self.taps.get("index"), self.taps.get("mode")
        weight = self.weight.to(hidden.dtype)
        if mode == "step":  # one new token per row: its taps are itself and the kept state
            if self.state is None or self.state.shape[0] != hidden.shape[0]:
                raise LayerprobeError("a Canon model's cache was not filled by this batch's prompt")
            window = torch.cat([hidden, self.state.to(hidden.dtype)], dim=1)  # [B, KERNEL, C], nearest first
            self.state = window[:, : KERNEL - 1].detach()
            return hidden + torch.einsum("bkc,ck->bc", window, weight)[:, None]
        if index is None:  # plain causal order (training): a padded depthwise conv1d, much faster than gathering
            if mode == "fill":
                last = nn.functional.pad(hidden[:, -(KERNEL - 1):].flip(1), (0, 0, 0, max(0, KERNEL - 1 - hidden.shape[1])))
                self.state = last.detach()
            kernel = weight.flip(-1)[:, None, :]  # conv1d runs oldest tap first
            padded = nn.functional.pad(hidden.transpose(1, 2), (KERNEL - 1, 0))
            return hidden + nn.functional.conv1d(padded, kernel, groups=hidden.shape[-1]).transpose(1, 2)
        flat = index.clamp(min=0).reshape(hidden.shape[0], -1, 1).expand(-1, -1, hidden.shape[-1])
        gathered = hidden.gather(1, flat).view(*index.shape, hidden.shape[-1])  # [B, T, KERNEL, C]
        gathered = gathered * (index >= 0)[..., None].to(hidden.dtype)
        if mode == "fill":  # the last token and its nearest visible predecessors: the next token's earlier taps
            self.state = gathered[:, -1, : KERNEL - 1].detach()
        return hidden + torch.einsum("btkc,ck->btc", gathered, weight)


def _after(canon: Canon):
    """A forward hook that passes a module's output through `canon`."""
    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return canon(output)
    return hook


def register() -> None:
    """Make `canon_llama` known to AutoConfig and AutoModelForCausalLM (idempotent)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config_class, model_class = _classes()
    try:
        AutoConfig.register(MODEL_TYPE, config_class)
        AutoModelForCausalLM.register(config_class, model_class)
    except ValueError:  # already registered
        pass


_CLASSES: tuple | None = None


def _classes() -> tuple[type, type]:
    """CanonLlamaConfig and CanonLlamaForCausalLM, built on first use (transformers imports slowly)."""
    global _CLASSES
    if _CLASSES is not None:
        return _CLASSES
    from transformers import LlamaConfig, LlamaForCausalLM

    class CanonLlamaConfig(LlamaConfig):
        """A LlamaConfig with `canon`: the Canon placements, a subset of ABCD."""

        model_type = MODEL_TYPE

        def __init__(self, canon: str = "", **kwargs):
            self.canon = canon_letters(canon)
            kwargs["use_cache"] = False  # plain forwards (training, the engine) build no cache unless asked
            super().__init__(**kwargs)

    class CanonLlamaForCausalLM(LlamaForCausalLM):
        """LlamaForCausalLM with Canon layers hooked into every block (see the module notes)."""

        config_class = CanonLlamaConfig

        def __init__(self, config: CanonLlamaConfig):
            super().__init__(config)
            self.generation_config.use_cache = True
            self._canon_taps: dict = {}
            self.model.register_forward_pre_hook(self._set_taps, with_kwargs=True)
            self.model.register_forward_hook(self._clear_taps)
            for layer in self.model.layers:
                attention, mlp = layer.self_attn, layer.mlp
                places = {"A": [(layer, "canon_a", layer.input_layernorm)],
                          "B": [(attention, f"canon_b_{name}", getattr(attention, f"{name}_proj")) for name in "qkv"],
                          "C": [(layer, "canon_c", layer.post_attention_layernorm)],
                          "D": [(mlp, f"canon_d_{name}", getattr(mlp, f"{name}_proj")) for name in ("gate", "up")]}
                for place in config.canon:
                    for owner, name, source in places[place]:
                        canon = Canon(source.weight.shape[0], self._canon_taps)
                        owner.add_module(name, canon)
                        source.register_forward_hook(_after(canon))

        def _set_taps(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
            cache = kwargs.get("past_key_values")
            ids = kwargs.get("input_ids", args[0] if args else None)
            reference = ids if ids is not None else kwargs["inputs_embeds"]
            if cache is not None and cache.get_seq_length() > 0:
                if reference.shape[1] != 1:
                    raise LayerprobeError("a Canon model extends its KV cache one token at a time")
                self._canon_taps.update(index=None, mode="step")
                return
            mask = kwargs.get("attention_mask")
            self._canon_taps["mode"] = "fill" if cache is not None or kwargs.get("use_cache") else None
            self._canon_taps["index"] = None if mask is None else previous_positions(
                mask, reference.shape[0], reference.shape[1], reference.device)

        def _clear_taps(self, module: nn.Module, args: tuple, output: object) -> None:
            self._canon_taps.pop("index", None)
            self._canon_taps.pop("mode", None)

        def _init_weights(self, module: nn.Module) -> None:
            super()._init_weights(module)
            if isinstance(module, Canon):
                module.reset_parameters()

    _CLASSES = (CanonLlamaConfig, CanonLlamaForCausalLM)
    return _CLASSES


def canon_config(canon: str, **llama: object):
    """A `canon_llama` config: LlamaConfig keyword arguments plus the Canon placements."""
    register()
    return _classes()[0](canon=canon, **llama)
