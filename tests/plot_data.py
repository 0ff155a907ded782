"""Small but realistically shaped CSVs of every task family (CSV_CONVENTIONS), for the figure tests.

Per-layer values come from 0/1 item outcomes drawn around a rising accuracy curve and pass
through `layer_rows`, so counts, means and Wilson intervals are what a real run would write.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from layerprobe.results import atomic_write_csv, layer_rows

MODELS = {"smollm2-135m": 30, "gemma3-270m": 18}
OPS = ["add", "sub", "mul", "div", "mix-2", "mix-3"]


def rising(n_layers: int, start: float, peak: float, peak_at: float) -> np.ndarray:
    """Accuracy per layer: flat near `start`, rising to `peak` at relative depth `peak_at`, then sagging a bit."""
    x = np.arange(n_layers + 1) / n_layers
    up = start + (peak - start) / (1 + np.exp(-12 * (x - peak_at + 0.2)))
    return np.clip(up - 0.25 * (peak - start) * np.clip(x - peak_at, 0, None), 0, 1)


def outcomes(curve: np.ndarray, n_items: int, rng: np.random.Generator) -> np.ndarray:
    return (rng.random((len(curve), n_items)) < curve[:, None]).astype(float)


def study1_rows(model: str, n_layers: int, rng: np.random.Generator) -> list[dict]:
    rows: list[dict] = []
    for index, task in enumerate(["mps-cal", "mps-rea", "factual", "logical"]):
        curve = rising(n_layers, 0.25, 0.45 + 0.08 * index, 0.7)
        rows += layer_rows(outcomes(curve, 40, rng), metric="accuracy", model=model, task=task,
                           method="lens-norm", subtask="all" if task == "factual" else "", language="en")
    for metric, peak in (("mc1", 0.35), ("mc2", 0.5), ("mc3", 0.3)):
        rows += layer_rows(outcomes(rising(n_layers, 0.2, peak, 0.8), 30, rng), metric=metric, model=model,
                           task="truthfulqa", method="lens-norm", language="en")
    everything = []
    for op_index, op in enumerate(OPS):
        for digits_index, digits in enumerate(["1-2", "3-4", "5-6"]):
            for number in ("int", "float"):
                peak = 0.9 - 0.1 * op_index - 0.15 * digits_index - (0.1 if number == "float" else 0)
                items = outcomes(rising(n_layers, 0.25, max(peak, 0.3), 0.75), 12, rng)
                everything.append(items)
                rows += layer_rows(items, metric="accuracy", model=model, task="calculation", method="lens-norm",
                                   subtask=f"{op}/{digits}/{number}", language="en")
    rows += layer_rows(np.concatenate(everything, axis=1), metric="accuracy", model=model, task="calculation",
                       method="lens-norm", subtask="all", language="en")
    for task in ("xmps-cal", "xmps-rea"):
        for index, language in enumerate(["en", "es", "fr", "de", "zh", "ja", "th"]):
            curve = rising(n_layers, 0.25, 0.6 - 0.04 * index, 0.7 + 0.02 * index)
            rows += layer_rows(outcomes(curve, 25, rng), metric="accuracy", model=model, task=task,
                               method="lens-norm", language=language)
    for task in ("factual", "logical", "truthfulqa"):  # the TruthfulQA probe reports accuracy, not MC1
        for metric, peak in (("accuracy", 0.7), ("control", 0.3)):
            rows += layer_rows(outcomes(rising(n_layers, 0.28, peak, 0.5), 40, rng), metric=metric, model=model,
                               task=task, method="probe", subtask="all" if task == "factual" else "", language="en",
                               interval="bootstrap")
    return rows


def earliest_rows(model: str, n_layers: int, task: str, subtasks: list[str], method: str, early: float) -> list[dict]:
    """Mean earliest layer per k, falling with log k; `early` shifts a lens (the tuned one) earlier."""
    rows = []
    for index, subtask in enumerate(subtasks):
        for k in (1, 2, 5, 10, 100, 1000, 10000):
            layer = max(0.0, n_layers * (0.95 - early - 0.12 * np.log10(k) - 0.04 * index))
            rows.append(dict(model=model, task=task, subtask=subtask, language="en", method=method, layer=-1,
                             n_layers=n_layers, metric="earliest_layer", value=round(layer, 2), n_items=50,
                             ci_low="", ci_high="", k=k))
    return rows


def study2_rows(model: str, n_layers: int, rng: np.random.Generator) -> list[dict]:
    rows: list[dict] = []
    layers = np.arange(n_layers + 1)
    for method, early in (("logit-lens", 0.0), ("tuned-lens", 0.1)):  # the tuned lens decodes earlier
        rows += earliest_rows(model, n_layers, "pos", ["DET", "ADP", "PUNCT", "NOUN", "VERB", "ADJ", "RANDOM"], method, early)
        rows += earliest_rows(model, n_layers, "facts", ["len2/pos1", "len2/pos2", "len3/pos1", "len3/pos3", "len10/pos1"], method, early)
        for k, peak_at in ((100, 0.3), (10, 0.4), (4, 0.5)):  # MMLU's letters reach the shortlist before the choice
            rows += layer_rows(outcomes(rising(n_layers, 0.0, 0.95, peak_at - early), 30, rng), metric="options_in_topk",
                               model=model, task="options", method=method, subtask="mmlu", language="en", k=k)
        for index, task in enumerate(["mmlu", "sentiment", "bool"]):
            rows += layer_rows(outcomes(rising(n_layers, 0.0, 0.85, 0.6 + 0.1 * index - early), 30, rng), metric="correct_top_option",
                               model=model, task="options", method=method, subtask=task, language="en")
            ranks = 1 + 2.5 * (1 - rising(n_layers, 0.0, 1.0, 0.6 + 0.1 * index - early))
            rows += [dict(r, metric="correct_option_rank", value=float(v), ci_low="", ci_high="")
                     for r, v in zip(layer_rows(np.zeros((n_layers + 1, 30)), metric="x", model=model, task="options",
                                                method=method, subtask=task, language="en"), ranks)]
            for metric, share in (("enter_layer", 0.55), ("settle_layer", 0.75)):
                rows.append(dict(model=model, task="options", subtask=task, language="en", method=method, layer=-1,
                                 n_layers=n_layers, metric=metric, value=round(n_layers * (share + 0.05 * index - early), 2),
                                 n_items=30, ci_low="", ci_high=""))
        top10 = 0.15 + 0.6 * np.exp(-((layers / n_layers - 0.3 + early) ** 2) / 0.03)
        shares = np.stack([top10, 0.5 * (1 - top10), 0.3 * (1 - top10), 0.2 * (1 - top10)])
        for bucket, values in zip(["top10", "11-100", "101-1000", "rest"], shares):
            rows += [dict(model=model, task="frequency", subtask=bucket, language="en", method=method, layer=int(layer),
                          n_layers=n_layers, metric="top1_share", value=float(v), n_items=500, ci_low="", ci_high="")
                     for layer, v in zip(layers, values)]
        for index, bucket in enumerate(["top10", "11-100", "101-1000", "rest", "all"]):
            flips = outcomes(1 - rising(n_layers, 0.0, 1.0, 0.85 - 0.05 * index - early), 60, rng)
            flips[-1] = 0.0  # the last layer is the final prediction: nothing flips there
            rows += layer_rows(flips, metric="flip_rate", model=model, task="flips", method=method, subtask=bucket,
                               language="en")
    return rows + lens_kl_rows(model, n_layers, rng)


def lens_kl_rows(model: str, n_layers: int, rng: np.random.Generator) -> list[dict]:
    """Held-out KL per layer of both lenses (trace_layers.py): large early for the logit lens, 0 at the last layer."""
    depth = np.arange(n_layers + 1) / n_layers
    rows: list[dict] = []
    for method, scale in (("logit-lens", 15.0), ("tuned-lens", 2.0)):
        values = scale * (1 - depth) * (1 + 0.1 * rng.random(n_layers + 1))
        rows += [dict(model=model, task="lens", subtask="held-out", language="en", method=method, layer=layer,
                      n_layers=n_layers, metric="kl", value=float(v), n_items=1024, ci_low=0.9 * float(v),
                      ci_high=1.1 * float(v)) for layer, v in enumerate(values)]
    return rows


def synthetic_rows(rng: np.random.Generator) -> list[dict]:
    rows: list[dict] = []
    labels = {"cfg": [f"{kind}/level{level}" for kind in ("ancestor", "span_end") for level in (2, 4, 6)],
              "bios": [f"{probe}/{attribute}" for probe in ("p-probe", "q-probe") for attribute in ("birth_city", "university", "major")],
              "igsm": ["nece", "can_next", "dep"]}
    for task, names in labels.items():
        model = f"{task}-gpt-4l"
        for index, label in enumerate(names):
            for method, peak in (("probe-trained", 0.95 - 0.05 * index), ("probe-random", 0.35)):
                rows += layer_rows(outcomes(rising(4, 0.3, peak, 0.75), 80, rng), metric="accuracy", model=model,
                                   task=task, method=method, subtask=label)
        if task == "bios":  # a non-augmented twin: its attributes are not readable at the name
            for index, label in enumerate(names):
                for method, peak in (("probe-trained", 0.5 if label.startswith("p-probe") else 0.1), ("probe-random", 0.3)):
                    rows += layer_rows(outcomes(rising(4, 0.3, peak, 0.75), 80, rng), metric="accuracy",
                                       model="bios-noaug-gpt-4l", task=task, method=method, subtask=label)
        if task == "igsm":
            for method, peak in (("vprobe-trained", 0.9), ("vprobe-random", 0.4)):
                rows += layer_rows(outcomes(rising(4, 0.3, peak, 0.75), 80, rng), metric="accuracy", model=model,
                                   task=task, method=method, subtask="nece")
    for model, condition, value in (("bios-gpt-4l", "mixed/aug", 0.87), ("bios-noaug-gpt-4l", "mixed/noaug", 0.1),
                                    ("bios-pf-gpt-4l", "pretrain-finetune/aug", 0.95)):
        for split, shift in (("train", 0.05), ("test", 0.0)):
            hits = [outcomes(np.array([min(1.0, value + shift + 0.02 * i)]), 50, rng)[0] for i in range(3)]
            for attribute, values in (("birth_city", hits[0]), ("university", hits[1]), ("major", hits[2]),
                                      ("all", np.concatenate(hits))):
                rows.append(dict(summary(values, model, "bios-qa", condition, split, "greedy"), attribute=attribute))
    for condition, value in (("root", 0.98), ("cut80", 0.9), ("cut80-corrupted", 0.4)):
        rows.append(summary(outcomes(np.array([value]), 100, rng)[0], "cfg-gpt-4l", "cfg-generation", condition, "", "sample"))
        for metric, number in (("support_collision", 4950.0 if condition == "root" else 1650.0),
                               ("collisions", 0.0 if condition == "root" else 3.0)):
            rows.append(dict(rows[-1], metric=metric, value=number, ci_low="", ci_high=""))
    for method, sharp in (("attention-trained", 1.0), ("attention-random", 0.0)):
        for layer in (1, 2, 3, 4):
            for head in (0, 1):
                decay = np.exp(-np.arange(33) * (0.05 + 0.2 * sharp * layer / 4))
                rows += [dict(model="cfg-gpt-4l", task="cfg-attention", subtask=f"distance/head{head}/d{d}", language="",
                              method=method, layer=layer, n_layers=4, metric="attention", value=float(v / decay.sum()),
                              n_items=100, ci_low="", ci_high="") for d, v in enumerate(decay)]
                rows += [dict(model="cfg-gpt-4l", task="cfg-attention", subtask=f"boundary/head{head}/level{level}",
                              language="", method=method, layer=layer, n_layers=4, metric="excess_attention",
                              value=float(sharp * 0.05 * level * head + rng.normal(0, 0.005)), n_items=100, ci_low="",
                              ci_high="") for level in (1, 2, 3)]
    for condition, questions in (("classify-cot", ("year_parity", "year_parity_cot")), ("dual", ("dual/major+university",))):
        for split, value in (("train", 0.95), ("test", 0.5)):
            for question in questions:
                rows.append(dict(summary(outcomes(np.array([value]), 50, rng)[0], "bios-gpt-4l", "bios-manipulation",
                                         f"pretrain-finetune/aug/{condition}", split, "greedy"), attribute=question))
                rows.append(dict(rows[-1], metric="majority", value=0.52, ci_low="", ci_high=""))
    for retry in (0.0, 0.2):
        for split in ("train", "test"):
            for ops, value in (("ops=3", 0.9), ("ops=6", 0.6), ("all", 0.75)):
                bonus = 0.05 if retry else 0.0
                rows.append(dict(summary(outcomes(np.array([value + bonus]), 60, rng)[0], "igsm-gpt-4l", "igsm-accuracy",
                                         f"retry={retry:g}/{ops}", split, "generation"), retry=retry))
                rows.append(dict(summary(outcomes(np.array([0.01]), 200, rng)[0], "igsm-gpt-4l", "igsm-accuracy",
                                         f"retry={retry:g}/{ops}", split, "generation"), metric="retry_share", retry=retry))
                if not retry:  # the error-free model: also finishing given beginnings (igsm_lm.detour_rows)
                    for metric, share in (("accuracy_after_steps", 0.95), ("accuracy_after_detour", 0.1)):
                        rows.append(dict(summary(outcomes(np.array([share]), 40, rng)[0], "igsm-gpt-4l", "igsm-accuracy",
                                                 f"retry=0/{ops}", split, "generation"), metric=metric, retry=retry))
    for split in ("train", "test"):
        for method, value, passes in (("greedy", 0.5, 60), ("beam4", 0.55, 240), ("regret-retry4", 0.7, 75)):
            for ops in ("ops=1", "ops=2", "all"):
                row = dict(summary(outcomes(np.array([value]), 30, rng)[0], "igsm-gpt-4l", "igsm-decode",
                                   f"{method}/{ops}", split, method))
                rows += [row, dict(row, metric="forward_passes", value=float(passes), ci_low="", ci_high="")]
    rows.append(dict(summary(outcomes(np.array([0.8]), 60, rng)[0], "igsm-gpt-4l", "igsm-decode-probe", "error",
                             "test", "vprobe-rank0"), metric="probe_accuracy", layer=2))
    for step, cpu in ((100, 60.0), (200, 130.0)):
        for ops, value in (("ops=1", 0.3), ("ops=2", 0.1), ("all", 0.2)):
            rows.append(dict(summary(outcomes(np.array([value * step / 100]), 30, rng)[0], "igsm-gpt-4l", "igsm-curve",
                                     f"retry=0/l4w128/step={step}/{ops}", "train", "generation"), step=step, train_cpu_s=cpu))
        rows.append(dict(rows[-1], metric="premature_share", value=0.5 - value * step / 400))
        for kind, value in (("name", 0.9), ("constant value k=2", 0.5 * step / 100), ("operand letter", 0.7)):
            rows.append(dict(summary(outcomes(np.array([value]), 40, rng)[0], "igsm-gpt-4l", "igsm-curve",
                                     f"retry=0/l4w128/step={step}/token={kind}", "train", "generation"),
                             metric="token_accuracy", step=step, train_cpu_s=cpu))
    for method, trainable, slope, backs in (("full", 1090000, 0.002, 0.2), ("lora8", 40000, 0.0, 0.0)):
        for step in (0, 100, 200):
            for split in ("train", "test"):
                condition = f"ft={method}/retry=0.2/l4w128/step={step}/all"
                rows.append(dict(summary(outcomes(np.array([0.3 + slope * step]), 60, rng)[0], f"igsm-ft{method}",
                                         "igsm-finetune", condition, split, "generation"),
                                 step=step, train_cpu_s=step * 0.6, retry=0.2, finetune=method, trainable_params=trainable))
                rows.append(dict(rows[-1], metric="retry_share", value=backs * step / 200, ci_low="", ci_high=""))
    for step, cpu, value in ((100, 50.0, 0.3), (200, 110.0, 0.8)):
        rows.append(dict(summary(outcomes(np.array([value]), 100, rng)[0], "cfg-gpt-4l", "cfg-curve", f"cfg3b/step={step}",
                                 "", "sample"), step=step, train_cpu_s=cpu))
    for exposures, per_param in ((100, 1.0), (1000, 2.0)):
        for n_params in (1e5, 3e5, 1e6, 3e6):
            for method, loss in (("fp32", 1.0), ("int8", 0.97), ("int4", 0.4)):
                rows.append(dict(model=f"capacity-x{exposures}-p{int(n_params)}", task="capacity", subtask="", language="",
                                 method=method, layer=-1, n_layers=4, metric="bits_per_param",
                                 value=loss * per_param * min(1.0, 3e5 / n_params * 1.5), n_items=1000, ci_low="",
                                 ci_high="", n_params=int(n_params), exposures=exposures, quantised=method != "fp32"))
    for seed in range(3):  # the junk-data experiment: 3 conditions x 3 seeds at one size
        for junk, domain, condition, value in JUNK_CONDITIONS:
            for method in ("fp32", "int8"):
                rows.append(dict(model=f"capacity-n256-llama-l1w8-x300-{condition}-s{seed}", task="capacity", subtask="",
                                 language="", method=method, layer=-1, n_layers=1, metric="bits_per_param",
                                 value=value + 0.01 * seed - 0.1 * (method == "int8"), n_items=256, ci_low="", ci_high="",
                                 n_params=3000 + 16 * (junk > 0), exposures=300, quantised=method != "fp32", width=8,
                                 junk=junk, domain=domain, condition=condition, seed=seed))
    for n_layers in (2, 4):
        for canon, value in (("none", 0.15), ("A", 0.6), ("ABCD", 0.7)):
            for hop in ("hops=1", "hops=2", "all"):
                rows.append(dict(summary(outcomes(np.array([value]), 80, rng)[0], f"khop-l{n_layers}-{canon}", "canon-khop",
                                         f"canon={canon}/{hop}", "", "argmax"),
                                 n_layers=n_layers, canon=canon, nodes=8, n_params=136000, train_cpu_s=80.0))
    return rows


JUNK_CONDITIONS = [(0.0, False, "no junk", 1.2), (0.875, False, "junk 7/8", 0.3), (0.875, True, "junk 7/8 + domain", 1.25)]
"""(junk, domain, condition, seed-0 fp32 bits/param) of the junk experiment's rows; seeds 1 and 2 add 0.01 each."""


def summary(values: np.ndarray, model: str, task: str, condition: str, split: str, method: str) -> dict:
    """A layer = -1 row with its Wilson interval, as the synthetic evaluators write it."""
    row = layer_rows(values[None, :], metric="accuracy", model=model, task=task, method=method, subtask=condition,
                     language=split)[0]
    return dict(row, layer=-1, n_layers=4)


def training_frame(run: str, steps: int = 40, floor: float = 0.6) -> pd.DataFrame:
    step = np.arange(1, steps + 1) * 25
    return pd.DataFrame(dict(run=run, step=step, tokens=step * 2048, loss=floor + 3.0 * np.exp(-step / 300),
                             lr=1e-3 * np.minimum(1, step / 100)))


def write_all(folder: Path, depths: dict[str, int] | None = None, seed: int = 0) -> dict[str, Path]:
    """Write one CSV per (script, model) as the producers do; returns name -> path.

    Every model (alias -> number of blocks, default MODELS) gets the study-1 tasks; the first one
    also gets the study-2 traces, which keeps the figure count (and the test time) down.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    frames = {}
    for index, (model, n_layers) in enumerate((depths or MODELS).items()):
        frames[f"study1_{model}"] = pd.DataFrame(study1_rows(model, n_layers, rng))
        if index == 0:
            frames[f"trace_{model}"] = pd.DataFrame(study2_rows(model, n_layers, rng))
    frames["synthetic"] = pd.DataFrame(synthetic_rows(rng))
    frames["train_bios-mixed-aug"] = training_frame("bios-mixed-aug")
    frames["train_bios-pretrain-finetune-aug"] = training_frame("bios-pretrain-finetune-aug", steps=60, floor=0.4)
    paths = {}
    for name, frame in frames.items():
        paths[name] = folder / f"{name}.csv"
        atomic_write_csv(paths[name], frame)
    return paths
