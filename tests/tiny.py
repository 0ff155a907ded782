"""Tiny random-weight models of each supported architecture, built offline inside the tests."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM, Gemma3TextConfig, GPT2Config, GPTNeoXConfig, LlamaConfig, PreTrainedTokenizerFast,
)

from layerprobe.models import Adapter, LoadedModel

VOCAB = 256 + 2  # one token per byte, plus <s> and </s>


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (one token per byte, BOS prepended): any text, no download."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: i for i, symbol in enumerate(sorted(alphabet))}
    vocab["<s>"], vocab["</s>"] = 256, 257
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    from tokenizers.processors import TemplateProcessing

    core.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 256)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>")
    tokenizer.pad_token = "</s>"
    return tokenizer


def tiny_config(model_type: str, n_layers: int = 3, d_model: int = 32):
    common = dict(vocab_size=VOCAB, bos_token_id=256, eos_token_id=257, pad_token_id=257)
    if model_type == "llama":
        return LlamaConfig(hidden_size=d_model, intermediate_size=2 * d_model, num_hidden_layers=n_layers,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                           tie_word_embeddings=False, **common)
    if model_type == "gpt2":
        return GPT2Config(n_embd=d_model, n_layer=n_layers, n_head=4, n_positions=512, **common)
    if model_type == "gpt_neox":
        return GPTNeoXConfig(hidden_size=d_model, intermediate_size=2 * d_model, num_hidden_layers=n_layers,
                             num_attention_heads=4, max_position_embeddings=512, rotary_pct=0.5,
                             tie_word_embeddings=False, **common)
    if model_type == "gemma3_text":
        return Gemma3TextConfig(hidden_size=d_model, intermediate_size=2 * d_model, num_hidden_layers=n_layers,
                                num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
                                sliding_window=8, final_logit_softcapping=30.0, **common)
    raise ValueError(model_type)


def tiny_lm(model_type: str = "llama", n_layers: int = 3, seed: int = 0, dtype: torch.dtype = torch.float32) -> LoadedModel:
    """A LoadedModel around a random tiny model (weights scaled up so layers differ visibly)."""
    torch.manual_seed(seed)
    config = tiny_config(model_type, n_layers)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0.0, 0.2)
    model.eval().requires_grad_(False)
    return LoadedModel(name=f"tiny-{model_type}", model=model, tokenizer=byte_tokenizer(),
                       adapter=Adapter(model), device=torch.device("cpu"), dtype=dtype)
