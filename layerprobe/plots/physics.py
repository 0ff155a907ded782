"""Physics of Language Models: small LMs trained on synthetic worlds (CFG, bioS, iGSM): probes, training
curves, QA accuracy by training condition, knowledge capacity."""

from __future__ import annotations

import math
import re

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter

from layerprobe.plots.common import (
    SERIES_PALETTE, Canvas, Data, Outcome, depth, layer_axis, legend_below, missing, model_order, new_figure, ordered,
    pct, safe_name, select, share_axis, subtask_sort_key,
)

SYNTHETIC_PROBE_TASKS = ["cfg", "bios", "igsm"]
QA_TASKS = ["cfg-generation", "bios-qa", "bios-manipulation", "igsm-accuracy"]
SYNTHETIC_TASKS = SYNTHETIC_PROBE_TASKS + QA_TASKS + ["capacity", "igsm-curve"]

SYNTHETIC = "Synthetic worlds: CFG, bioS, iGSM"


def probe_kind(method: str) -> tuple[str, str]:
    """'vprobe-random' -> ('vprobe', 'random')."""
    kind, _, init = method.rpartition("-")
    return kind, init


def synthetic_probes(data: Data, canvas: Canvas) -> list[Outcome]:
    rows = select(data.results, task=SYNTHETIC_PROBE_TASKS, metric="accuracy")
    rows = rows[(rows["layer"] >= 0) & rows["method"].str.contains("probe")]
    if rows.empty:
        return missing("syn_probes", SYNTHETIC, f"no probe rows with task in {', '.join(SYNTHETIC_PROBE_TASKS)}")
    outcomes: list[Outcome] = []
    for task in ordered(rows["task"], SYNTHETIC_PROBE_TASKS):
        for model in model_order(select(rows, task=task)):
            mine = select(rows, task=task, model=model)
            n_layers = depth(mine)
            mine = mine.assign(kind=[probe_kind(m)[0] for m in mine["method"]],
                               init=[probe_kind(m)[1] for m in mine["method"]],
                               group=[s.split("/")[0] if "/" in s else task for s in mine["subtask"]])
            panels = sorted(set(zip(mine["kind"], mine["group"])))
            columns = min(3, len(panels))
            n_rows = math.ceil(len(panels) / columns)
            figure = new_figure(3.7 * columns + 2.2, 3.0 * n_rows + 0.6)
            axes = figure.subplots(n_rows, columns, squeeze=False).ravel()
            readings, handles = [], {}
            for ax, (kind, group) in zip(axes, panels):
                part = select(mine, kind=kind, group=group)
                labels = sorted(set(part["subtask"]), key=subtask_sort_key)
                colours = dict(zip(labels, SERIES_PALETTE))
                for label in labels:
                    short = label.split("/", 1)[-1]
                    for init, style in (("trained", "-"), ("random", "--")):
                        line = select(part, subtask=label, init=init).sort_values("layer")
                        if line.empty:
                            continue
                        ax.plot(line["layer"], line["value"], style, color=colours[label], lw=1.4)
                        best = line.loc[line["value"].idxmax()]
                        readings.append(f"{label} ({kind}, {init}) best layer {int(best['layer'])} {pct(best['value'])}")
                    handles.setdefault(f"{group}: {short}", Line2D([], [], color=colours[label]))
                layer_axis(ax, n_layers)
                share_axis(ax, "probe accuracy")
                ax.set_title(f"{kind}: {group}")
            for ax in axes[len(panels):]:
                ax.set_visible(False)
            handles |= {f"{init} model": Line2D([], [], color="black", ls=style)
                        for init, style in (("trained", "-"), ("random", "--"))}
            legend_below(figure, list(handles.values()), list(handles), "label")
            title = f"{model}: {task} probe accuracy per layer, trained vs random-init model"
            figure.suptitle(title)
            outcomes.append(canvas.save(figure, f"syn_probes_{safe_name(task)}_{safe_name(model)}", SYNTHETIC, title,
                                        "; ".join(readings) + "."))
    return outcomes


def run_family(run: str) -> str:
    """'capacity-n1000-gpt-l2w64-x100' -> 'capacity': runs of one sweep share a figure."""
    return re.split(r"[-_]", run, maxsplit=1)[0] or run


def synthetic_training(data: Data, canvas: Canvas) -> list[Outcome]:
    frame = data.training
    if frame.empty:
        return missing("syn_training", SYNTHETIC, "no train_*.csv files")
    outcomes: list[Outcome] = []
    for family in sorted({run_family(run) for run in frame["run"]}):
        part = frame[[run_family(run) == family for run in frame["run"]]]
        use_tokens = "tokens" in part.columns and part["tokens"].notna().all()
        x_column = "tokens" if use_tokens else "step"
        has_lr = "lr" in part.columns and part["lr"].notna().any()
        figure = new_figure(10 if has_lr else 7.5, 3.8)
        axes = figure.subplots(1, 2 if has_lr else 1, squeeze=False)[0]
        runs = sorted(set(part["run"]))
        colours = (SERIES_PALETTE if len(runs) <= len(SERIES_PALETTE)
                   else list(matplotlib.colormaps["viridis"](np.linspace(0, 0.95, len(runs)))))
        readings = []
        for run, colour in zip(runs, colours):
            line = part[part["run"] == run].sort_values("step")
            axes[0].plot(line[x_column], line["loss"], color=colour, lw=1.3, label=run)
            readings.append(f"{run}: loss {line['loss'].iloc[0]:.3f} -> {line['loss'].iloc[-1]:.3f} "
                            f"after {int(line[x_column].iloc[-1]):,} {x_column}")
            if has_lr:
                axes[1].plot(line["step"], line["lr"], color=colour, lw=1.3)
        axes[0].xaxis.set_major_formatter(EngFormatter())  # 2M tokens, not 2e6
        axes[0].set_ylim(bottom=0)
        axes[0].set_xlabel(x_column)
        axes[0].set_ylabel("training loss (nats/token)")
        axes[0].set_title("loss")
        if has_lr:
            axes[1].set_xlabel("step")
            axes[1].set_ylabel("learning rate")
            axes[1].set_title("learning-rate schedule")
        legend_below(figure, *axes[0].get_legend_handles_labels(), "run")
        title = f"Training curves: {family} runs"
        figure.suptitle(title)
        outcomes.append(canvas.save(figure, f"syn_training_{safe_name(family)}", SYNTHETIC, title,
                                    "; ".join(readings) + "."))
    return outcomes


def synthetic_igsm_curve(data: Data, canvas: Canvas) -> list[Outcome]:
    """iGSM learning curves: greedy accuracy by number of operations against the training CPU minutes."""
    rows = select(data.results, task="igsm-curve", metric="accuracy")
    if rows.empty or "train_cpu_s" not in rows.columns:
        return missing("syn_igsm_curve", SYNTHETIC, "no igsm-curve rows (train_igsm.py grades each checkpoint)")
    models = model_order(rows)
    figure = new_figure(4.2 * len(models) + 1.0, 3.8)
    axes = figure.subplots(1, len(models), squeeze=False)[0]
    readings, handles = [], {}
    for ax, model in zip(axes, models):
        mine = select(rows, model=model)
        mine = mine.assign(level=[s.rsplit("/", 1)[-1] for s in mine["subtask"]])
        levels = sorted(set(mine["level"]), key=lambda level: (level == "all", level))
        for level, colour in zip(levels, SERIES_PALETTE):
            line = mine[mine["level"] == level].sort_values("step")
            minutes = line["train_cpu_s"].astype(float) / 60
            handles[level] = ax.plot(minutes, line["value"], marker="o", color=colour, lw=1.4, ms=3,
                                     ls="--" if level == "all" else "-")[0]
            ax.fill_between(minutes, line["ci_low"].astype(float), line["ci_high"].astype(float), color=colour, alpha=0.12)
            last = line.iloc[-1]
            readings.append(f"{model} {level}: {pct(last['value'])} at step {int(last['step'])} "
                            f"({float(last['train_cpu_s']) / 60:.1f} CPU min)")
        share_axis(ax, "greedy accuracy (train templates)")
        ax.set_xlabel("training CPU minutes")
        ax.set_title(model, fontsize=8)
    legend_below(figure, list(handles.values()), list(handles), "operations")
    title = "iGSM learning curves: accuracy by number of operations vs training CPU time"
    figure.suptitle(title)
    return [canvas.save(figure, "syn_igsm_curve", SYNTHETIC, title, "; ".join(readings) + ".")]


def qa_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, task, condition, split): the "all" row where a task reports accuracy per
    question (extra column `attribute`), else each question becomes its own condition."""
    if "attribute" not in rows.columns:
        return rows
    attribute = rows["attribute"].fillna("").astype(str)
    pooled = rows.assign(attribute=attribute).groupby("task")["attribute"].transform(lambda a: (a == "all").any())
    keep = ~pooled | (attribute == "all")
    split_out = ~pooled & (attribute != "")
    subtask = rows["subtask"].where(~split_out, rows["subtask"] + "/" + attribute)
    return rows.assign(subtask=subtask)[keep]


def synthetic_qa(data: Data, canvas: Canvas) -> list[Outcome]:
    rows = qa_rows(select(data.results, task=QA_TASKS, metric="accuracy", layer=-1))
    if rows.empty:
        return missing("syn_qa", SYNTHETIC, f"no summary rows (layer -1) with task in {', '.join(QA_TASKS)}")
    tasks = ordered(rows["task"], QA_TASKS)
    conditions = {task: sorted(set(select(rows, task=task)["subtask"])) for task in tasks}
    models = model_order(rows)
    bars = {task: sorted(set(zip(select(rows, task=task)["model"], select(rows, task=task)["language"])),
                         key=lambda b: (models.index(b[0]), b[1] != "train", b[1])) for task in tasks}
    slots = [len(conditions[t]) * max(2, len(bars[t])) for t in tasks]
    figure = new_figure(min(14.0, 0.55 * sum(slots) + 2.5 * len(tasks) + 1.5), 4.2)
    axes = figure.subplots(1, len(tasks), squeeze=False, width_ratios=slots)[0]
    readings, handles = [], {}
    for ax, task in zip(axes, tasks):
        part = select(rows, task=task)
        width = 0.8 / max(2, len(bars[task]))
        for index, (model, split) in enumerate(bars[task]):
            offsets = np.arange(len(conditions[task])) + (index - (len(bars[task]) - 1) / 2) * width
            cells = select(part, model=model, language=split).groupby("subtask")[["value", "ci_low", "ci_high"]].mean()
            cells = cells.reindex(conditions[task])
            values = cells["value"].to_numpy()
            errors = np.abs(np.nan_to_num(cells[["ci_low", "ci_high"]].to_numpy().T - values, nan=0.0))
            handles[f"{model}, {split or 'all'}"] = ax.bar(
                offsets, values, width * 0.92, yerr=errors, color=canvas.colour(model),
                alpha=0.45 if split == "train" else 1.0, hatch="//" if split == "train" else None, edgecolor="white",
                error_kw=dict(lw=0.8, capsize=2, ecolor="black"))
            for x, value, top in zip(offsets, values, np.fmax(values, cells["ci_high"].to_numpy())):
                if np.isfinite(value):  # above the error bar
                    ax.text(x, top + 0.015, f"{value:.0%}", ha="center", va="bottom", fontsize=7)
            readings.append(f"{task} {model} {split or 'all'}: "
                            + ", ".join(f"{c} {pct(v)}" for c, v in zip(conditions[task], values)))
        ax.set_xticks(range(len(conditions[task])), [c.replace("/", "/\n") for c in conditions[task]])
        ax.set_xlim(-0.6, len(conditions[task]) - 0.4)
        share_axis(ax, "accuracy", top=1.14)
        ax.set_yticks(np.linspace(0, 1, 5))
        ax.grid(axis="x", visible=False)
        ax.set_title(task)
    legend_below(figure, list(handles.values()), list(handles), "model, split")
    title = "Synthetic worlds: accuracy by training condition (hatched = train split)"
    figure.suptitle(title)
    return [canvas.save(figure, "syn_qa", SYNTHETIC, title, "; ".join(readings) + ".")]


def synthetic_capacity(data: Data, canvas: Canvas) -> list[Outcome]:
    rows = select(data.results, task="capacity", metric="bits_per_param")
    if rows.empty:
        return missing("syn_capacity", SYNTHETIC, "no task 'capacity' rows with metric bits_per_param")
    if "n_params" not in rows.columns or rows["n_params"].isna().all():
        return missing("syn_capacity", SYNTHETIC, "capacity rows lack the extra column n_params")
    rows = rows.dropna(subset=["n_params"])
    has_exposures = "exposures" in rows.columns and rows["exposures"].notna().any()
    groups = sorted(set(rows["exposures"].dropna())) if has_exposures else [None]
    quantised = rows["quantised"].astype(str) if "quantised" in rows.columns else pd.Series("", index=rows.index)
    figure = new_figure(7.5, 4.2)
    ax = figure.add_subplot()
    readings = []
    flags = sorted(set(quantised))
    for group, colour in zip(groups, SERIES_PALETTE):
        part = rows if group is None else rows[rows["exposures"] == group]
        for flag in sorted(set(quantised[part.index])):
            points = part[quantised[part.index] == flag].sort_values("n_params")
            is_quantised = flag.lower() in ("true", "1", "yes")
            label = (("all runs" if group is None else f"{int(group)} exposures")
                     + ((", quantised" if is_quantised else ", full precision") if len(flags) > 1 else ""))
            marker = "s" if is_quantised else "o"
            ax.plot(points["n_params"], points["value"], "-", marker=marker, color=colour, label=label, ms=5)
            top = points.loc[points["value"].idxmax()]
            readings.append(f"{label}: up to {top['value']:.2f} bits/param (at {int(top['n_params']):,} parameters)")
    ax.axhline(2, color="grey", ls=":", lw=1)
    ax.text(0.99, 2, "2 bits/param (published, 1000 exposures)", transform=ax.get_yaxis_transform(),
            ha="right", va="bottom", fontsize=7, color="grey")
    ax.set_xscale("log")
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("bits of knowledge per parameter")
    ax.set_ylim(bottom=0)
    legend_below(figure, *ax.get_legend_handles_labels())
    title = "Knowledge capacity: bits per parameter vs model size"
    figure.suptitle(title)
    return [canvas.save(figure, "syn_capacity", SYNTHETIC, title, "; ".join(readings) + ".")]
