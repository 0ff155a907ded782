"""The one engine every task uses: batched forward passes, per-layer candidate scores, hidden states.

Multiple-choice scoring packs each item into one sequence, `prompt + candidate_1 + ... + candidate_K`,
with a block attention mask: every candidate sees the whole prompt and its own earlier tokens, never
another candidate, and its position ids continue at the prompt length P. So one forward costs
P + sum(candidate tokens) instead of K x (P + candidate), and no key/value cache is copied. Block
states are captured by hooks only at the rows that predict a candidate token (plus the feature rows),
and the lens (final norm + unembedding + log-softmax) runs only on those rows, in chunks, in fp32 by
default (`layerprobe.head` for the bf16 and mixed heads): memory never grows with layers x positions x
vocabulary.

Layer numbering: 0 = input of the first block (embeddings), l = output of block l, L = output of the
last block before the final norm.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from layerprobe import parallel
from layerprobe.errors import LayerprobeError
from layerprobe.head import LensHead
from layerprobe.models import LoadedModel, cache_dir
from layerprobe.publish import staged
from layerprobe.tasks.base import MCItem

DEFAULT_BATCH_TOKENS = 2048
"""Tokens per forward (padded batch size x length) when no --batch-size is given; halved on OOM."""
LOGIT_CHUNK_BYTES = 64 * 2**20
"""Upper bound on one chunk of fp32 lens logits; bounds the head's peak memory."""
CACHE_CHUNK_ITEMS = 64
"""Items per chunk of the disk cache: a resumed run recomputes at most one chunk."""
SCORING_VERSION = 2
"""Part of every score-cache key (`_fingerprint`). Bump it with any change that can move a cached
number: packing, masks, hooks, the lens or head code (`layerprobe.head`, its MIXED_TOP_K and
CORRECTION_RANK), the adapter, or what a chunk file holds. 2: the key covers every weight, the
dtype, the tokenizer (1 hashed the config and 4,096 embedding values)."""


@dataclass
class MCScores:
    """Per-item, per-candidate, per-layer results of `score_items`.

    logprob[i][k, l]: summed log-prob of candidate k's tokens of item i under the lens at layer l.
    n_tokens[i][k]: candidate k's token count (divide for length-normalised scores).
    prompt_features[i, l]: state at the last prompt token; candidate_features[i][k, l]: mean of the
    states at candidate k's tokens (both raw residual states, float32; only with features=True).
    """

    logprob: list[np.ndarray]
    n_tokens: list[np.ndarray]
    prompt_features: np.ndarray | None = None
    candidate_features: list[np.ndarray] | None = None


@dataclass
class _Packed:
    """One item laid out as one sequence, with the rows the lens must read."""

    input_ids: list[int]
    position_ids: list[int]
    segment: list[int]  # -1 = prompt, k = candidate k
    score_rows: list[int]  # row whose output predicts each scored target
    targets: list[int]
    target_candidate: list[int]
    prompt_last: int
    candidate_rows: list[list[int]]  # rows of each candidate's tokens (features)


def _pack(prompt_ids: list[int], candidate_ids: list[list[int]], features: bool) -> _Packed:
    prompt_len = len(prompt_ids)
    input_ids, position_ids, segment = list(prompt_ids), list(range(prompt_len)), [-1] * prompt_len
    score_rows, targets, target_candidate, candidate_rows = [], [], [], []
    for k, tokens in enumerate(candidate_ids):
        # The last candidate token is fed only when its state is a feature: nothing is predicted from it.
        fed = tokens if features else tokens[:-1]
        start = len(input_ids)
        input_ids += fed
        position_ids += range(prompt_len, prompt_len + len(fed))
        segment += [k] * len(fed)
        candidate_rows.append(list(range(start, start + len(tokens))) if features else [])
        score_rows += [prompt_len - 1] + list(range(start, start + len(tokens) - 1))
        targets += tokens
        target_candidate += [k] * len(tokens)
    return _Packed(input_ids, position_ids, segment, score_rows, targets, target_candidate,
                   prompt_len - 1, candidate_rows)


def _block_mask(segments: list[list[int]], positions: torch.Tensor, dtype: torch.dtype,
                window: int | None = None) -> torch.Tensor:
    """Additive [B, 1, S, S] mask: causal, and a candidate token sees the prompt and its own candidate only.

    With `window` (sliding-window attention) a query also sees only keys less than `window` positions back.
    """
    batch, length = positions.shape
    seg = torch.full((batch, length), -2, dtype=torch.long)  # -2 = padding
    for b, s in enumerate(segments):
        seg[b, : len(s)] = torch.tensor(s)
    query, key = seg[:, :, None], seg[:, None, :]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    allowed = causal & (key != -2) & ((key == -1) | (key == query))
    if window is not None:
        allowed &= (positions[:, :, None] - positions[:, None, :]) < window
    allowed |= torch.eye(length, dtype=torch.bool)  # padding rows see themselves: no all-masked softmax row
    mask = torch.zeros(batch, 1, length, length, dtype=dtype)
    return mask.masked_fill_(~allowed[:, None], torch.finfo(dtype).min)


def _attention_mask(lm: LoadedModel, segments: list[list[int]], positions: torch.Tensor) -> torch.Tensor | dict:
    """The packed mask in the form the architecture takes: one mask, or one per attention type.

    A ready 4D mask bypasses transformers' own mask building, sliding windows included, so the
    window is applied here (Gemma 2/3 alternate sliding and full layers; Mistral slides everywhere).
    """
    config = lm.model.config
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None) or []
    if window and "sliding_attention" in layer_types:
        return {"full_attention": _block_mask(segments, positions, lm.dtype),
                "sliding_attention": _block_mask(segments, positions, lm.dtype, window)}
    if window and not layer_types and getattr(config, "use_sliding_window", True):
        return _block_mask(segments, positions, lm.dtype, window)
    return _block_mask(segments, positions, lm.dtype)


class _StateCapture:
    """Forward hooks that keep, for every layer, only the hidden states at the requested rows."""

    def __init__(self, lm: LoadedModel):
        self.blocks = lm.adapter.blocks
        self.index: tuple[torch.Tensor, torch.Tensor] | None = None
        self.states: list[torch.Tensor | None] = [None] * (len(self.blocks) + 1)
        self.handles: list = []

    def _keep(self, layer: int, hidden: torch.Tensor) -> None:
        batch_index, row_index = self.index
        self.states[layer] = hidden[batch_index.to(hidden.device), row_index.to(hidden.device)].float()

    def __enter__(self) -> "_StateCapture":
        def before_first(module, args, kwargs):
            self._keep(0, args[0] if args else kwargs["hidden_states"])

        self.handles.append(self.blocks[0].register_forward_pre_hook(before_first, with_kwargs=True))
        for layer, block in enumerate(self.blocks, start=1):
            def after(module, args, output, layer=layer):
                self._keep(layer, output[0] if isinstance(output, tuple) else output)

            self.handles.append(block.register_forward_hook(after))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()

    def run(self, lm: LoadedModel, index: tuple[torch.Tensor, torch.Tensor], **inputs: torch.Tensor) -> torch.Tensor:
        """Forward the base model (never its full-vocabulary head); return states [L+1, rows, d]."""
        self.index = index
        inputs = {name: _to_device(value, lm.device) for name, value in inputs.items()}
        with torch.inference_mode():
            lm.model.base_model(**inputs, use_cache=False)
        head_device = lm.adapter.head_device
        return torch.stack([state.to(head_device) for state in self.states])


def _to_device(value: torch.Tensor | dict, device: torch.device) -> torch.Tensor | dict:
    if isinstance(value, dict):
        return {key: tensor.to(device) for key, tensor in value.items()}
    return value.to(device)


def _batches(lengths: Sequence[int], batch_size: int | None, batch_tokens: int) -> Iterator[list[int]]:
    """Group item indices, longest first, so that padded batch x length stays under the budget."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for index in order:
        longest = lengths[batch[0]] if batch else lengths[index]
        too_many = batch_size is not None and len(batch) >= batch_size
        if batch and (too_many or (len(batch) + 1) * longest > batch_tokens):
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch


def _with_oom_retry(run_batch: Callable[[list[int]], None], batches: Iterator[list[int]]) -> None:
    """Run each batch; on out-of-memory halve the batch size for the rest of the run and go on."""
    pending = list(batches)
    limit: int | None = None
    while pending:
        batch = pending.pop(0)
        if limit is not None and len(batch) > limit:
            pending[:0] = [batch[i:i + limit] for i in range(0, len(batch), limit)]
            continue
        try:
            run_batch(batch)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise LayerprobeError("out of memory on a single item: use a smaller model, --dtype float16 or --device auto") from None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            limit = len(batch) // 2
            pending.insert(0, batch)


def _tokenize(lm: LoadedModel, items: Sequence[MCItem]) -> list[tuple[list[int], list[list[int]]]]:
    tokenizer = lm.tokenizer
    encoded = []
    for number, item in enumerate(items):
        prompt_ids = tokenizer(item.prompt)["input_ids"]
        candidate_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in item.candidates]
        if not prompt_ids:
            raise LayerprobeError(f"item {number}: the prompt is empty after tokenization")
        empty = [c for c, ids in zip(item.candidates, candidate_ids) if not ids]
        if empty:
            raise LayerprobeError(f"item {number}: candidate {empty[0]!r} is empty after tokenization")
        encoded.append((prompt_ids, candidate_ids))
    return encoded


def _lens_logprobs(head: LensHead, states: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor,
                   lens: str) -> torch.Tensor:
    """log p(target | state) at every layer for (row, target) pairs: [L+1, n_pairs], in row chunks."""
    n_layers_plus, n_rows, _ = states.shape
    chunk = max(1, LOGIT_CHUNK_BYTES // (4 * head.vocab_size))
    out = torch.empty(n_layers_plus, len(targets), device=states.device)
    for layer in range(n_layers_plus):
        for start in range(0, n_rows, chunk):
            in_chunk = (rows >= start) & (rows < start + chunk)
            out[layer, in_chunk] = head.logprobs(states[layer, start:start + chunk], rows[in_chunk] - start,
                                                 targets[in_chunk], lens)
    return out


def _weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Every parameter and buffer once (tied weights once), by name. accelerate keeps an offloaded
    weight on the "meta" device and its hook holds the value: that value is read instead."""
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            if tensor is None or id(tensor) in seen:
                continue
            seen.add(id(tensor))
            if tensor.device.type == "meta":
                tensor = _offloaded(module, name, f"{module_name}.{name}")
            yield f"{module_name}.{name}", tensor


def _offloaded(module: torch.nn.Module, name: str, full_name: str) -> torch.Tensor:
    hook = getattr(module, "_hf_hook", None)
    for candidate in getattr(hook, "hooks", [hook]):  # accelerate's SequentialHook holds several
        weights = getattr(candidate, "weights_map", None)
        if weights is not None and name in weights:
            return weights[name]
    raise LayerprobeError(f"weight {full_name} is on the meta device and no offload hook holds it: "
                          "cannot key the score cache (pass use_cache=False)")


_WORDS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
CHECKSUM_CHUNK = {"cpu": 2**16, "accelerator": 2**22}
"""Elements per step of `_checksum`. On a CPU a step that stays in cache is faster (SmolLM2's whole
fingerprint, 135M weights, one thread: 0.52 CPU s with 2**16, 1.02 s with 2**22); on a GPU big steps
save kernel launches."""


def _checksum(tensor: torch.Tensor) -> tuple[int, int]:
    """Sum and odd-weighted sum (element i weighted 2i+1) of the tensor's raw words, mod 2**64, on its device.

    Exact integer arithmetic: no rounding, the same on every device and in every order. One changed
    element changes both sums (by delta and by delta x an odd number, never 0 mod 2**64); the weighted
    sum also sees elements that swap places. Much cheaper than a cryptographic hash on a GPU.
    """
    words = tensor.detach().contiguous().view(-1).view(_WORDS[tensor.element_size()])
    chunk = CHECKSUM_CHUNK["cpu" if words.device.type == "cpu" else "accelerator"]
    total = torch.zeros((), dtype=torch.int64, device=words.device)
    weighted = torch.zeros((), dtype=torch.int64, device=words.device)
    odd = torch.arange(1, 2 * min(len(words), chunk), 2, device=words.device)
    for start in range(0, len(words), chunk):
        part = words[start:start + chunk].long()
        part_sum = part.sum()
        # sum of part[j] * (2 (start + j) + 1) = sum of part[j] * (2j + 1) + 2 start * sum of part[j]
        weighted += (part * odd[:len(part)]).sum() + 2 * start * part_sum
        total += part_sum
    return int(total) % 2**64, int(weighted) % 2**64


def _tokenizer_identity(tokenizer: object) -> str:
    """The whole tokenizer of a fast tokenizer (vocabulary, merges, normaliser, special tokens), else its vocabulary."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocabulary = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    special = json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True, default=str)
    return hashlib.sha256((type(tokenizer).__name__ + special + vocabulary).encode()).hexdigest()


def weights_digest(model: torch.nn.Module) -> str:
    """A hash of every weight and buffer as they are now (name, dtype, shape, `_checksum`): one changed
    weight, even in memory, gives another digest. Keys the score cache and the tuned-lens cache."""
    weights = [(name, str(tensor.dtype), list(tensor.shape), *_checksum(tensor)) for name, tensor in _weights(model)]
    return hashlib.sha256(json.dumps(weights).encode()).hexdigest()


def _fingerprint(lm: LoadedModel, lens: str, head_dtype: str) -> str:
    """What a cached score depends on besides the items: every weight and buffer (`weights_digest`, taken
    at each call, so a model changed in memory misses the cache), the config, the forward dtype, the
    tokenizer, the lens, the head precision and SCORING_VERSION."""
    config = lm.model.config.to_dict()
    key = [SCORING_VERSION, config, str(lm.dtype), _tokenizer_identity(lm.tokenizer), lens, head_dtype,
           weights_digest(lm.model)]
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def _chunk_path(fingerprint: str, encoded: Sequence, features: bool) -> Path:
    digest = hashlib.sha256(json.dumps([fingerprint, features, encoded]).encode()).hexdigest()[:24]
    return cache_dir() / "scores" / f"{digest}.npz"


def _save_chunk(path: Path, scores: MCScores) -> None:
    arrays: dict[str, np.ndarray] = {
        "logprob": np.concatenate(scores.logprob), "n_tokens": np.concatenate(scores.n_tokens),
        "sizes": np.array([len(x) for x in scores.n_tokens]),
    }
    if scores.prompt_features is not None:
        arrays["prompt_features"] = scores.prompt_features
        arrays["candidate_features"] = np.concatenate(scores.candidate_features)
    with staged(path) as staging:  # two runs may write the same chunk: each publishes a whole file
        np.savez(staging, **arrays)


def _load_chunk(path: Path) -> MCScores:
    with np.load(path) as data:
        splits = np.cumsum(data["sizes"])[:-1]
        features = "prompt_features" in data
        return MCScores(
            logprob=np.split(data["logprob"], splits), n_tokens=np.split(data["n_tokens"], splits),
            prompt_features=data["prompt_features"] if features else None,
            candidate_features=np.split(data["candidate_features"], splits) if features else None,
        )


def score_items(lm: LoadedModel, items: Sequence[MCItem], lens: str = "norm", batch_size: int | None = None,
                features: bool = False, progress: bool = True, desc: str | None = None,
                batch_tokens: int = DEFAULT_BATCH_TOKENS, use_cache: bool = True,
                head_dtype: str = "float32") -> MCScores:
    """Score every candidate of every item at every layer (and optionally return probe features).

    `head_dtype` is the lens head's precision (`layerprobe.head`: float32, bfloat16 or mixed).
    Results are cached on disk in chunks of CACHE_CHUNK_ITEMS items, keyed by the token ids, `features`
    and `_fingerprint` (every weight, checksummed at each call, the config, the dtype, the tokenizer,
    the lens, the head dtype, SCORING_VERSION): an interrupted run resumes, a repeated run reads the cache.
    Under a launcher (`layerprobe.parallel`) every process must call this with the same items: the
    batches are shared out, every process returns the whole result, and the main process alone
    decides which chunks are cached and writes the new ones.
    """
    if lens not in ("norm", "raw"):
        raise LayerprobeError(f"unknown lens '{lens}': use norm or raw")
    head = LensHead(lm.adapter, head_dtype)
    encoded = _tokenize(lm, items)
    chunks = [encoded[start:start + CACHE_CHUNK_ITEMS] for start in range(0, len(encoded), CACHE_CHUNK_ITEMS)]
    fingerprint = _fingerprint(lm, lens, head_dtype) if use_cache else ""
    paths = [_chunk_path(fingerprint, chunk, features) for chunk in chunks]
    cached = parallel.agree([use_cache and path.exists() for path in paths])
    parts = [_load_chunk(path) if hit else None for path, hit in zip(paths, cached)]
    bar = tqdm(total=len(items), desc=desc or f"{lm.name} scoring", unit="item",
               disable=not progress or not parallel.is_main())
    bar.update(sum(len(chunk) for chunk, hit in zip(chunks, cached) if hit))
    todo = [number for number, hit in enumerate(cached) if not hit]
    step = parallel.count()  # as many chunks at a time as processes, so that every process has batches to run
    for start in range(0, len(todo), step):
        wave = todo[start:start + step]
        scored = _score_chunks(lm, head, [chunks[number] for number in wave], lens, batch_size, features, batch_tokens, bar)
        for number, part in zip(wave, scored):
            if use_cache and parallel.is_main():
                _save_chunk(paths[number], part)
            parts[number] = part
    bar.close()
    return MCScores(
        logprob=[x for p in parts for x in p.logprob], n_tokens=[x for p in parts for x in p.n_tokens],
        prompt_features=np.concatenate([p.prompt_features for p in parts]) if features and parts else None,
        candidate_features=[x for p in parts for x in p.candidate_features] if features else None,
    )


@dataclass
class _ItemScores:
    """One item's part of `MCScores`: logprob [K, L+1], features [L+1, d] and [K, L+1, d] (or None)."""

    logprob: np.ndarray
    prompt_features: np.ndarray | None
    candidate_features: np.ndarray | None


def _score_chunks(lm: LoadedModel, head: LensHead, chunks: Sequence[Sequence[tuple[list[int], list[list[int]]]]], lens: str,
                  batch_size: int | None, features: bool, batch_tokens: int, bar: tqdm) -> list[MCScores]:
    """Score chunks of encoded items, sharing their batches out between the processes.

    Every chunk is cut into the batches a single process cuts it into, so no score depends on the
    number of processes.
    """
    encoded = [item for chunk in chunks for item in chunk]
    packed = [_pack(prompt, candidates, features) for prompt, candidates in encoded]
    batches, offset = [], 0
    for chunk in chunks:
        lengths = [len(p.input_ids) for p in packed[offset:offset + len(chunk)]]
        batches += [[offset + i for i in batch] for batch in _batches(lengths, batch_size, batch_tokens)]
        offset += len(chunk)
    scored: dict[int, _ItemScores] = {}

    def run_batch(batch: list[int]) -> None:
        scored.update(_score_batch(lm, head, packed, batch, lens, features))
        bar.update(len(batch))

    _with_oom_retry(run_batch, iter(parallel.share(batches)))
    everything = dict(parallel.gather(list(scored.items())))
    bar.update(len(encoded) - len(scored))  # the other processes' items
    results, offset = [], 0
    for chunk in chunks:
        mine = [everything[i] for i in range(offset, offset + len(chunk))]
        results.append(MCScores(
            logprob=[item.logprob for item in mine], n_tokens=[np.array([len(ids) for ids in c]) for _, c in chunk],
            prompt_features=np.stack([item.prompt_features for item in mine]) if features else None,
            candidate_features=[item.candidate_features for item in mine] if features else None,
        ))
        offset += len(chunk)
    return results


def _score_batch(lm: LoadedModel, head: LensHead, packed: Sequence[_Packed], batch: list[int], lens: str,
                 features: bool) -> dict[int, _ItemScores]:
    """One forward over the packed items `batch` (indices into `packed`) and the lens at their scored rows."""
    length = max(len(packed[i].input_ids) for i in batch)
    input_ids = torch.zeros(len(batch), length, dtype=torch.long)
    position_ids = torch.zeros(len(batch), length, dtype=torch.long)
    batch_index, row_index, pair_row, pair_target, starts = [], [], [], [], []
    for b, i in enumerate(batch):
        p = packed[i]
        input_ids[b, : len(p.input_ids)] = torch.tensor(p.input_ids)
        position_ids[b, : len(p.position_ids)] = torch.tensor(p.position_ids)
        # Unique rows to read: the scoring rows, then (features) the candidate rows.
        wanted = sorted(set(p.score_rows) | {p.prompt_last} | {r for rows in p.candidate_rows for r in rows})
        local = {row: len(row_index) + j for j, row in enumerate(wanted)}
        starts.append(local)
        batch_index += [b] * len(wanted)
        row_index += wanted
        pair_row += [local[r] for r in p.score_rows]
        pair_target += p.targets
    mask = _attention_mask(lm, [packed[i].segment for i in batch], position_ids)
    index = (torch.tensor(batch_index), torch.tensor(row_index))
    with _StateCapture(lm) as capture:
        states = capture.run(lm, index, input_ids=input_ids, position_ids=position_ids, attention_mask=mask)
    device = states.device
    with torch.inference_mode():
        pair_logprob = _lens_logprobs(head, states, torch.tensor(pair_row, device=device),
                                      torch.tensor(pair_target, device=device), lens).double().cpu().numpy()
    state = states.cpu().numpy() if features else None
    n_layers_plus = lm.n_layers + 1
    scored, offset = {}, 0
    for b, i in enumerate(batch):
        p, local = packed[i], starts[b]
        logprob = np.zeros((len(p.candidate_rows), n_layers_plus))
        n_pairs = len(p.targets)
        np.add.at(logprob.T, (slice(None), np.array(p.target_candidate)), pair_logprob[:, offset:offset + n_pairs])
        offset += n_pairs
        prompt_features = candidate_features = None
        if features:
            prompt_features = state[:, local[p.prompt_last]]
            candidate_features = np.stack([state[:, [local[r] for r in rows]].mean(axis=1) for rows in p.candidate_rows])
        scored[i] = _ItemScores(logprob, prompt_features, candidate_features)
    return scored


def hidden_states_at(lm: LoadedModel, sequences: Sequence[Sequence[int]], positions: Sequence[Sequence[int]],
                     batch_size: int | None = None, progress: bool = True, desc: str | None = None,
                     batch_tokens: int = DEFAULT_BATCH_TOKENS) -> list[torch.Tensor]:
    """Raw residual states of every layer at chosen positions: per sequence a float32 [L+1, n_positions, d].

    Sequences are right-padded, which a causal model needs neither a mask nor position ids for.
    """
    if len(sequences) != len(positions):
        raise ValueError("one list of positions per sequence")
    for number, (sequence, wanted) in enumerate(zip(sequences, positions)):
        if any(not 0 <= p < len(sequence) for p in wanted):
            raise LayerprobeError(f"sequence {number}: a position is outside its {len(sequence)} tokens")
    results: list[torch.Tensor | None] = [None] * len(sequences)
    bar = tqdm(total=len(sequences), desc=desc or f"{lm.name} hidden states", unit="seq", disable=not progress)
    pad = lm.tokenizer.pad_token_id if getattr(lm.tokenizer, "pad_token_id", None) is not None else 0

    def run_batch(batch: list[int]) -> None:
        length = max(len(sequences[i]) for i in batch)
        input_ids = torch.full((len(batch), length), pad, dtype=torch.long)
        batch_index, row_index = [], []
        for b, i in enumerate(batch):
            input_ids[b, : len(sequences[i])] = torch.as_tensor(sequences[i])
            batch_index += [b] * len(positions[i])
            row_index += list(positions[i])
        with _StateCapture(lm) as capture:
            states = capture.run(lm, (torch.tensor(batch_index), torch.tensor(row_index)), input_ids=input_ids)
        offset = 0
        for i in batch:
            results[i] = states[:, offset:offset + len(positions[i])].cpu()
            offset += len(positions[i])
        bar.update(len(batch))

    _with_oom_retry(run_batch, _batches([len(s) for s in sequences], batch_size, batch_tokens))
    bar.close()
    return results
