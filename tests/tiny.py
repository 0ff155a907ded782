"""Tiny random-weight models of each supported architecture, built offline inside the tests."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM, Gemma3TextConfig, GPT2Config, GPTNeoXConfig, LlamaConfig, PreTrainedTokenizerFast,
)

from layerprobe.models import Adapter, LoadedModel

VOCAB = 256 + 2  # one token per byte, plus <s> and </s>


OPTION_WORDS = (" A", " B", " C", " D", " yes", " no", " positive", " negative")
"""The option tokens of study 2's option tasks, which `byte_tokenizer(OPTION_WORDS)` makes single tokens."""


def byte_tokenizer(words: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (one token per byte, BOS prepended): any text, no download. Each word
    of `words` (" A") becomes a single token by BPE merges of its prefixes (new ids from 258 on)."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: i for i, symbol in enumerate(sorted(alphabet))}
    vocab["<s>"], vocab["</s>"] = 256, 257
    merges = []
    for word in words:
        (symbols, _), = pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(word)
        for end in range(2, len(symbols) + 1):
            if symbols[:end] not in vocab:
                merges.append((symbols[: end - 1], symbols[end - 1]))
                vocab[symbols[:end]] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    from tokenizers.processors import TemplateProcessing

    core.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 256)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>")
    tokenizer.pad_token = "</s>"
    return tokenizer


def tiny_config(model_type: str, n_layers: int = 3, d_model: int = 32, vocab_size: int = VOCAB):
    common = dict(vocab_size=vocab_size, bos_token_id=256, eos_token_id=257, pad_token_id=257)
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


def tiny_lm(model_type: str = "llama", n_layers: int = 3, seed: int = 0, dtype: torch.dtype = torch.float32,
            words: tuple[str, ...] = ()) -> LoadedModel:
    """A LoadedModel around a random tiny model (weights scaled up so layers differ visibly);
    `words`: words that are single tokens (see `byte_tokenizer`)."""
    torch.manual_seed(seed)
    tokenizer = byte_tokenizer(words)
    config = tiny_config(model_type, n_layers, vocab_size=len(tokenizer))
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0.0, 0.2)
    model.eval().requires_grad_(False)
    return LoadedModel(name=f"tiny-{model_type}", model=model, tokenizer=tokenizer,
                       adapter=Adapter(model), device=torch.device("cpu"), dtype=dtype)


def write_tiny_gguf(path, n_layers: int = 2, d_model: int = 32, seed: int = 0) -> None:
    """A tiny llama GGUF file with fp32 random weights and a byte-level vocabulary, written with the `gguf` package.

    transformers reads it like a packaged model's GGUF (tokenizer included), so the real conversion runs on it.
    """
    import gguf
    import numpy as np

    heads, kv_heads, ff = 4, 2, 2 * d_model
    tokens = sorted(pre_tokenizers.ByteLevel.alphabet()) + ["<s>", "</s>"]
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(512)
    writer.add_embedding_length(d_model)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * 256 + [3, 3])  # normal bytes, then the two control tokens
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_bos_token_id(256)
    writer.add_eos_token_id(257)

    def random(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.2).astype(np.float32))

    random("token_embd.weight", len(tokens), d_model)
    kv_width = d_model * kv_heads // heads
    for block in range(n_layers):
        for norm in ("attn_norm", "ffn_norm"):
            writer.add_tensor(f"blk.{block}.{norm}.weight", np.ones(d_model, np.float32))
        random(f"blk.{block}.attn_q.weight", d_model, d_model)
        random(f"blk.{block}.attn_k.weight", kv_width, d_model)
        random(f"blk.{block}.attn_v.weight", kv_width, d_model)
        random(f"blk.{block}.attn_output.weight", d_model, d_model)
        random(f"blk.{block}.ffn_gate.weight", ff, d_model)
        random(f"blk.{block}.ffn_up.weight", ff, d_model)
        random(f"blk.{block}.ffn_down.weight", d_model, ff)
    writer.add_tensor("output_norm.weight", np.ones(d_model, np.float32))
    random("output.weight", len(tokens), d_model)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
