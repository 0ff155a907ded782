"""The slow, obvious multiple-choice scorer, kept as the yardstick for the engine (tests, bench).

One full forward per (item, candidate) at batch size 1, the lens at every position of every layer,
as the study-1 code did. The last layer under the `norm` lens is the model's own logits, so the
engine's packing, masks, position ids and hooks are checked against transformers' plain forward.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from layerprobe.models import LoadedModel
from layerprobe.tasks.base import MCItem


def naive_score_items(lm: LoadedModel, items: Sequence[MCItem], lens: str = "norm") -> list[np.ndarray]:
    """Per item [n_candidates, L+1] summed candidate log-probs, one forward per candidate."""
    results = []
    last_block = lm.adapter.blocks[-1]
    for item in items:
        prompt_ids = lm.tokenizer(item.prompt)["input_ids"]
        scores = []
        for candidate in item.candidates:
            candidate_ids = lm.tokenizer(candidate, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt_ids + candidate_ids], device=lm.device)
            captured = {}
            handle = last_block.register_forward_hook(
                lambda m, a, out: captured.__setitem__("raw", out[0] if isinstance(out, tuple) else out))
            with torch.inference_mode():
                output = lm.model(input_ids=ids, output_hidden_states=True, use_cache=False)
            handle.remove()
            layers = [lm.adapter.to_logits(h[0], lens) for h in output.hidden_states[:-1]]
            last = output.logits[0].float() if lens == "norm" else lm.adapter.to_logits(captured["raw"][0], lens)
            logprobs = torch.log_softmax(torch.stack(layers + [last]), dim=-1)  # [L+1, T, V]
            start = len(prompt_ids)
            picked = [logprobs[:, start - 1 + j, token] for j, token in enumerate(candidate_ids)]
            scores.append(torch.stack(picked).sum(0).double().cpu().numpy())
        results.append(np.stack(scores))
    return results
