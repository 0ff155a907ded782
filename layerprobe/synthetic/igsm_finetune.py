"""LoRA versus full fine-tuning of an error-free iGSM model on retry data (Physics of LMs 2.2).

The paper finds that error correction ("define P as x [BACK]" and go on correctly) is a skill that
LoRA adapters on a model pretrained on error-free data cannot learn, while full fine-tuning on enough
retry data can. A fine-tuning here is an `IGSMRun` with `finetune` ("full" or "lora<rank>") and
`start` (the fine-tuned run's name) set; it copies the starting run's architecture and seed, so its
checkpoints are graded on the very problems of the starting run's curve (training and test
templates, by number of operations; step 0 is the starting model). LoRA adapters (peft, alpha =
2 x rank) sit on every attention and MLP projection (Llama: q, k, v, o, gate, up, down); the
embeddings and the output head stay frozen. The fine-tuning's batches use seed + 1, so they are
new problems, and the loss is on everything written, mistakes included, as in the paper.

`out/runs/<run>/` holds the checkpoint (a LoRA one holds the adapters, so a rerun resumes), then
`model/` with the adapters merged into the weights, `vocab.json` and `igsm_run.json`: it loads
back as a plain model through `igsm_runs.load_run` (and `probe_synthetic.py --run`). Curves go to
`<data>/igsm-finetune_<run>.csv` (task igsm-finetune; extra columns step, train_cpu_s, retry,
finetune, trainable_params, n_params).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import torch

from layerprobe import parallel
from layerprobe.errors import LayerprobeError
from layerprobe.models import LoadedModel
from layerprobe.results import atomic_write_text
from layerprobe.synthetic import igsm_lm
from layerprobe.synthetic.igsm_runs import FULL_FINETUNE_LR_FACTOR, RUN_FILE, IGSMRun, curve_grader, load_run
from layerprobe.synthetic.runs import with_lora
from layerprobe.synthetic.train import n_parameters, save_model, train, wrap

TASK = "igsm-finetune"
METHODS = ("full", "lora8", "lora32")
"""The default comparison: full fine-tuning, LoRA rank 8 and rank 32."""
FINETUNE_STEPS = 300
"""train_igsm.py's default number of fine-tuning steps."""
LORA_TARGETS = "all-linear"
"""peft's shorthand for every linear layer but the output head: all attention and MLP projections."""


def lora_rank(method: str) -> int:
    """0 for "full", r for "lora<r>"; anything else is a one-line error."""
    match = re.fullmatch(r"full|lora([1-9][0-9]*)", method)
    if match is None:
        raise LayerprobeError(f"--finetune takes full or lora<rank> (e.g. lora8), got '{method}'")
    return int(match.group(1) or 0)


def finetune_spec(start: IGSMRun, method: str, retry: float, steps: int, lr: float, batch: int,
                  curve_every: int = 0, mask_mistakes: bool = False) -> IGSMRun:
    """The fine-tuning of `start` by `method` on retry data of probability `retry`. Full fine-tuning
    takes lr / 3 (every weight moves; as the bios pretrain-finetune runs do), LoRA the full lr."""
    return dataclasses.replace(start, finetune=method, start=start.name(), retry=retry, steps=steps,
                               lr=lr if lora_rank(method) else lr * FULL_FINETUNE_LR_FACTOR, batch=batch, curve_every=curve_every,
                               curriculum=0.0, mask_mistakes=mask_mistakes)


def trainable_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def finetune_igsm(start_dir: Path, spec: IGSMRun, out_root: Path, data_dir: Path, n_per_ops: int,
                  device: str = "cpu", progress: bool = True) -> LoadedModel:
    """Fine-tune (or resume, or reload) `spec` from the finished run in `start_dir`, grading both splits
    at step 0 and at every checkpoint; returns the fine-tuned model (adapters merged) for the engine."""
    start, lm = load_run(start_dir, device=device)
    if spec.start != start.name():
        raise LayerprobeError(f"{start_dir} holds run {start.name()}, not {spec.start}")
    model = lm.model
    rank = lora_rank(spec.finetune)
    torch.manual_seed(spec.seed)  # the adapters' initialisation
    tuned = with_lora(model, rank, targets=LORA_TARGETS) if rank else model.requires_grad_(True)
    out = Path(out_root) / spec.name()
    vocab = igsm_lm.make_vocab()
    grader = curve_grader(tuned, spec, data_dir, n_per_ops, splits=("train", "test"), task=TASK, finetune=spec.finetune,
                          trainable_params=trainable_parameters(tuned), n_params=n_parameters(model))
    if parallel.is_main() and not (out / "checkpoint.pt").exists():
        grader(0)  # the starting model, on the same problems
    batches = igsm_lm.batch_fn(vocab, spec.config(), spec.batch, seed=spec.seed + 1, retry_p=spec.retry,
                               mask_mistakes=spec.mask_mistakes)
    every = spec.curve_every or max(1, spec.steps // 10)
    train(tuned, batches, steps=spec.steps, lr=spec.lr, out_dir=out, curve_csv=Path(data_dir) / f"train_{spec.name()}.csv",
          desc=spec.name(), progress=progress, checkpoint_every=every, log_every=min(every, max(1, spec.steps // 100)),
          on_checkpoint=grader)
    if rank:  # model/ must load as a plain model: merge the adapters into the weights
        model = tuned.merge_and_unload()
        if parallel.is_main() and not (out / "model" / "config.json").exists():
            save_model(model, out / "model")
    if parallel.is_main():
        vocab.save(out / "vocab.json")
        atomic_write_text(out / RUN_FILE, json.dumps(dataclasses.asdict(spec), indent=1))
    model.requires_grad_(False)
    return wrap(model, vocab, name=spec.name())
