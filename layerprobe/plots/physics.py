"""Physics of Language Models: small LMs trained on synthetic worlds (CFG, bioS, iGSM): probes, training
curves, QA accuracy by training condition, knowledge capacity."""

from __future__ import annotations

import math
import re
import textwrap

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import EngFormatter, PercentFormatter

from layerprobe.plots.common import (
    SERIES_PALETTE, Canvas, Data, Outcome, depth, heatmap, layer_axis, legend_below, missing, model_order, new_figure,
    ordered, pct, safe_name, select, share_axis, subtask_sort_key,
)
from layerprobe.results import t_interval
from layerprobe.synthetic.bios import ATTRIBUTES

SYNTHETIC_PROBE_TASKS = ["cfg", "bios", "igsm"]
QA_TASKS = ["cfg-generation", "bios-qa", "bios-manipulation", "igsm-accuracy"]
SYNTHETIC_TASKS = SYNTHETIC_PROBE_TASKS + QA_TASKS + ["capacity", "cfg-attention", "canon-khop", "igsm-curve", "cfg-curve",
                                                      "igsm-decode", "igsm-decode-probe", "igsm-finetune"]

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


SKILLS = {"name": "name the next parameter", "constant value k=2": "constant's value (2+ constants)",
          "constant value k=3+": "constant's value (2+ constants)", "operation": "operation",
          "operand letter": "operand letters", "operand order": "order of a difference's operands",
          "operand value": "operand values", "result": "arithmetic result"}
"""Teacher-forced token kinds drawn by `syn_igsm_curve` (igsm_lm.token_kinds), by the skill they show."""


PREMATURE = "all: first error a step begun too early"
"""Legend of the curve's premature_share line (igsm_lm.accuracy_rows)."""


def synthetic_igsm_curve(data: Data, canvas: Canvas) -> list[Outcome]:
    """iGSM learning curves: greedy accuracy by number of operations against the training CPU minutes, the
    share of problems lost to a step begun too early (where the curve has it) and the teacher-forced accuracy
    of each skill (which one holds the model back)."""
    rows = select(data.results, task="igsm-curve", metric="accuracy")
    premature = select(data.results, task="igsm-curve", metric="premature_share")
    if rows.empty or "train_cpu_s" not in rows.columns:
        return missing("syn_igsm_curve", SYNTHETIC, "no igsm-curve rows (train_igsm.py grades each checkpoint)")
    skills = _skill_rows(select(data.results, task="igsm-curve", metric="token_accuracy"))
    models = model_order(rows)
    figure = new_figure(max(7.0, 4.2 * len(models) + 1.0), 3.8 if skills.empty else 7.2)
    axes = figure.subplots(1 if skills.empty else 2, len(models), squeeze=False)
    readings, handles, skill_handles = [], {}, {}
    for column, model in enumerate(models):
        ax = axes[0][column]
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
        early = premature[(premature["model"] == model) & premature["subtask"].str.endswith("/all")].sort_values("step")
        if not early.empty:
            handles[PREMATURE] = ax.plot(early["train_cpu_s"].astype(float) / 60, early["value"], marker="x", color="grey",
                                         lw=1.2, ms=4, ls=":")[0]
            readings.append(f"{model} lost to a premature step: {pct(early['value'].iloc[-1])} of problems")
        share_axis(ax, "greedy accuracy (train templates)")
        ax.set_xlabel("training CPU minutes")
        ax.set_title(model, fontsize=8)
        if skills.empty:
            continue
        ax = axes[1][column]
        mine = skills[skills["model"] == model]
        for skill, colour in zip(dict.fromkeys(SKILLS.values()), SERIES_PALETTE[len(levels):]):  # not the levels' colours
            line = mine[mine["skill"] == skill].sort_values("step")
            if line.empty:
                continue
            skill_handles[skill] = ax.plot(line["train_cpu_s"] / 60, line["value"], marker="o", color=colour, lw=1.4,
                                           ms=3)[0]
            readings.append(f"{model} teacher-forced {skill}: {pct(line['value'].iloc[-1])}")
        share_axis(ax, "teacher-forced accuracy")
        ax.set_xlabel("training CPU minutes")
    legend_below(figure, list(handles.values()) + list(skill_handles.values()), list(handles) + list(skill_handles),
                 "operations / skill")
    title = "iGSM learning curves: accuracy by operations, and by skill, vs training CPU time"
    figure.suptitle(title)
    return [canvas.save(figure, "syn_igsm_curve", SYNTHETIC, title, "; ".join(readings) + ".")]


def _skill_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Token-accuracy rows pooled into `SKILLS` by their counts: model, step, train_cpu_s, skill, value."""
    if rows.empty:
        return pd.DataFrame(columns=["model", "step", "train_cpu_s", "skill", "value"])
    rows = rows.assign(skill=[SKILLS.get(s.rsplit("token=", 1)[-1]) for s in rows["subtask"]]).dropna(subset=["skill"])
    rows = rows.assign(hits=rows["value"].astype(float) * rows["n_items"], train_cpu_s=rows["train_cpu_s"].astype(float))
    pooled = rows.groupby(["model", "step", "train_cpu_s", "skill"])[["hits", "n_items"]].sum().reset_index()
    return pooled.assign(value=pooled["hits"] / pooled["n_items"])


def _level(subtask: str) -> str:
    """"retry=0.1/l4w128/ops=2" -> "ops=2"."""
    return subtask.rsplit("/", 1)[-1]


def _levels(values: pd.Series) -> list[str]:
    return sorted(set(values), key=lambda level: (level == "all", level))


def synthetic_igsm_retry(data: Data, canvas: Canvas) -> list[Outcome]:
    """Part 2.2: accuracy by number of operations against the retry rate p of the training data, on training
    and held-out templates (one row of panels per model family), and the share of written steps that are
    [BACK]-retries at test time."""
    rows = select(data.results, task="igsm-accuracy", layer=-1)
    if rows.empty or "retry" not in rows.columns:
        return missing("syn_igsm_retry", SYNTHETIC, "no igsm-accuracy rows with the extra column retry")
    rows = rows.assign(p=pd.to_numeric(rows["retry"], errors="coerce"), level=[_level(s) for s in rows["subtask"]],
                       family=[re.sub(r"-retry[0-9.]+(e-?[0-9]+)?", "", m) for m in rows["model"]]).dropna(subset=["p"])
    families = [f for f in sorted(set(rows["family"])) if rows[rows["family"] == f]["p"].nunique() >= 2]
    if not families:
        return missing("syn_igsm_retry", SYNTHETIC, "fewer than two retry rates p in every model family")
    figure = new_figure(12.0, 3.4 * len(families) + 0.8)
    axes = figure.subplots(len(families), 3, squeeze=False)
    readings, handles = [], {}
    for row_axes, family in zip(axes, families):
        mine = rows[rows["family"] == family]
        rates = sorted(set(mine["p"]))
        where = {p: x for x, p in enumerate(rates)}
        for ax, split in zip(row_axes[:2], ("train", "test")):
            part = select(mine, metric="accuracy", language=split)
            for level, colour in zip(_levels(part["level"]), SERIES_PALETTE):
                line = part[part["level"] == level].sort_values("p")
                x = [where[p] for p in line["p"]]
                handles[level] = ax.plot(x, line["value"], marker="o", color=colour, lw=1.4, ms=3,
                                         ls="--" if level == "all" else "-")[0]
                ax.fill_between(x, line["ci_low"].astype(float), line["ci_high"].astype(float), color=colour, alpha=0.1)
                if level == "all":
                    readings.append(f"{family} {split} templates: " + ", ".join(
                        f"p={p:g} {pct(v)}" for p, v in zip(line["p"], line["value"])))
            share_axis(ax, f"accuracy ({split} templates)")
            ax.set_title(f"{family}: {split} templates", fontsize=8)
        ax = row_axes[2]
        shares = select(mine, metric="retry_share", level="all")
        for split, colour in zip(("train", "test"), SERIES_PALETTE):
            line = select(shares, language=split).sort_values("p")
            x = [where[p] for p in line["p"]]
            ax.errorbar(x, line["value"], yerr=[line["value"] - line["ci_low"].astype(float),
                                                line["ci_high"].astype(float) - line["value"]],
                        marker="s", capsize=3, color=colour, label=f"{split} templates")
            if split == "test" and not line.empty:
                readings.append(f"{family} [BACK] share of written steps (test): " + ", ".join(
                    f"p={p:g} {pct(v)}" for p, v in zip(line["p"], line["value"])))
        share_axis(ax, "share of written steps that are retries")
        ax.set_ylim(0, max(0.1, float(shares["ci_high"].astype(float).max(skipna=True) or 0) * 1.2))
        ax.legend(fontsize=7)
        ax.set_title(f"{family}: retries written", fontsize=8)
        for ax in row_axes:
            ax.set_xticks(range(len(rates)), [f"{p:g}" for p in rates])
            ax.set_xlabel("retry rate p of the training data")
    legend_below(figure, list(handles.values()), list(handles), "operations")
    title = "iGSM part 2.2: accuracy by number of operations vs the retry rate of the training data"
    figure.suptitle(title)
    return [canvas.save(figure, "syn_igsm_retry", SYNTHETIC, title, "; ".join(readings) + ".")]


def synthetic_igsm_decode(data: Data, canvas: Canvas) -> list[Outcome]:
    """Part 2.2: greedy, beam search and regret-and-retry on the same problems: accuracy by number of
    operations (train / held-out templates) and forward passes per problem."""
    rows = select(data.results, task="igsm-decode", layer=-1)
    if rows.empty:
        return missing("syn_igsm_decode", SYNTHETIC, "no task 'igsm-decode' rows (decode_igsm.py)")
    rows = rows.assign(level=[_level(s) for s in rows["subtask"]])
    models = model_order(rows)
    figure = new_figure(12.0, 3.4 * len(models) + 0.8)
    axes = figure.subplots(len(models), 3, squeeze=False)
    readings, handles = [], {}
    for row_axes, model in zip(axes, models):
        mine = select(rows, model=model)
        methods = list(dict.fromkeys(mine.sort_values("method", key=lambda m: m.map(_method_rank))["method"]))
        for ax, split in zip(row_axes[:2], ("train", "test")):
            part = select(mine, metric="accuracy", language=split)
            levels = _levels(part["level"])
            for method, values in _level_bars(ax, part, "method", methods, levels, handles).items():
                readings.append(f"{model} {split} {method}: " + ", ".join(f"{lv} {pct(v)}" for lv, v in zip(levels, values)))
            share_axis(ax, f"accuracy ({split} templates)")
            ax.set_title(f"{model}: {split} templates", fontsize=8)
        ax = row_axes[2]
        passes = select(mine, metric="forward_passes", level="all")
        for index, (split, hatch) in enumerate((("train", "//"), ("test", None))):
            cells = select(passes, language=split).set_index("method").reindex(methods)
            values = cells["value"].to_numpy(dtype=float)
            ax.bar(np.arange(len(methods)) + (index - 0.5) * 0.4, values, 0.38, hatch=hatch, edgecolor="white",
                   color=[SERIES_PALETTE[i] for i in range(len(methods))], alpha=0.5 if split == "train" else 1.0)
            readings.append(f"{model} forward passes per problem ({split}): "
                            + ", ".join(f"{m} {v:.0f}" for m, v in zip(methods, values)))
        ax.set_xticks(range(len(methods)), methods, fontsize=7)
        ax.set_ylabel("forward passes per problem (hatched: train)")
        ax.grid(axis="x", visible=False)
        ax.set_title(f"{model}: decoding cost", fontsize=8)
    probe = select(data.results, task="igsm-decode-probe", metric="probe_accuracy")
    readings += [f"{r['model']} error probe (layer {int(r['layer'])}) held-out accuracy {pct(r['value'])}"
                 for _, r in probe.iterrows()]
    legend_below(figure, list(handles.values()), list(handles), "decoding")
    title = "iGSM part 2.2: regret-and-retry vs greedy and beam search (same problems)"
    figure.suptitle(title)
    return [canvas.save(figure, "syn_igsm_decode", SYNTHETIC, title, "; ".join(readings) + ".")]


def _level_bars(ax: Axes, part: pd.DataFrame, key: str, series: list[str], levels: list[str],
                handles: dict) -> dict[str, np.ndarray]:
    """Grouped bars, one group per level ("ops=1", ..., "all"), one bar per value of column `key` in `series`,
    with their intervals; fills `handles` for the legend, returns each series' values by level."""
    width, drawn = 0.8 / len(series), {}
    for index, (name, colour) in enumerate(zip(series, SERIES_PALETTE)):
        cells = part[part[key] == name].set_index("level").reindex(levels)
        values = cells["value"].to_numpy(dtype=float)
        errors = np.abs(np.nan_to_num(cells[["ci_low", "ci_high"]].to_numpy(dtype=float).T - values, nan=0.0))
        handles[name] = ax.bar(np.arange(len(levels)) + (index - (len(series) - 1) / 2) * width, values, width * 0.92,
                               yerr=errors, color=colour, error_kw=dict(lw=0.8, capsize=2, ecolor="black"))
        drawn[name] = values
    ax.set_xticks(range(len(levels)), levels)
    ax.grid(axis="x", visible=False)
    return drawn


DETOUR_CONTEXTS = {"accuracy": "from the start", "accuracy_after_steps": "after its own steps but the last",
                   "accuracy_after_detour": "after one unneeded step more"}
"""What each bar of `syn_igsm_detour` shows (igsm_lm.accuracy_rows and igsm_lm.detour_rows)."""


def synthetic_igsm_detour(data: Data, canvas: Canvas) -> list[Outcome]:
    """Does a model look the query's operands up, or write them by their place? Greedy accuracy from the start,
    after being given the solution up to the query's step, and after the same plus one correct unneeded step
    (igsm_lm.detour_grade), by number of operations, on training and held-out templates."""
    rows = select(data.results, task="igsm-accuracy", metric=list(DETOUR_CONTEXTS), layer=-1)
    rows = rows.assign(level=[_level(s) for s in rows["subtask"]], condition=[s.rsplit("/", 1)[0] for s in rows["subtask"]],
                       context=rows["metric"].map(DETOUR_CONTEXTS))
    detoured = select(rows, metric="accuracy_after_detour")
    models = [(m, c) for m in model_order(detoured) for c in dict.fromkeys(select(detoured, model=m)["condition"])]
    if not models:
        return missing("syn_igsm_detour", SYNTHETIC, "no igsm-accuracy rows with accuracy_after_detour (train_igsm.py)")
    figure = new_figure(9.0, 3.2 * len(models) + 0.8)
    axes = figure.subplots(len(models), 2, squeeze=False)
    readings, handles = [], {}
    for row_axes, (model, condition) in zip(axes, models):
        for ax, split in zip(row_axes, ("train", "test")):
            part = select(rows, model=model, condition=condition, language=split)
            levels = _levels(part["level"])
            drawn = _level_bars(ax, part, "context", list(DETOUR_CONTEXTS.values()), levels, handles)
            readings.append(f"{model} {split} templates, all operations: " + ", ".join(
                f"{context} {pct(values[-1])}" for context, values in drawn.items()))
            share_axis(ax, f"accuracy ({split} templates)")
            ax.set_title("\n".join(textwrap.wrap(f"{model}: {split} templates", 60)), fontsize=7)  # run names are long
    legend_below(figure, list(handles.values()), list(handles), "the model solves")
    title = "iGSM: accuracy after one unneeded step in the context (operands looked up, or written by place?)"
    figure.suptitle(title)
    return [canvas.save(figure, "syn_igsm_detour", SYNTHETIC, title, "; ".join(readings) + ".")]


def _method_rank(method: str) -> int:
    return 0 if method == "greedy" else 1 if method.startswith("beam") else 2


def synthetic_igsm_finetune(data: Data, canvas: Canvas) -> list[Outcome]:
    """Part 2.2, LoRA vs full fine-tuning on retry data: greedy accuracy (training and test templates) and the
    share of written steps that are [BACK] retries, against the fine-tuning step, one line per method."""
    rows = select(data.results, task="igsm-finetune", metric=["accuracy", "retry_share"])
    rows = rows[rows["subtask"].str.endswith("/all")]
    needed = {"step", "finetune", "retry", "trainable_params"}
    if rows.empty or not needed <= set(rows.columns):
        return missing("syn_igsm_finetune", SYNTHETIC,
                       "no igsm-finetune rows with step, finetune, retry, trainable_params (train_igsm.py --finetune-from)")
    panels = [("accuracy", "train", "accuracy, training templates"), ("accuracy", "test", "accuracy, test templates"),
              ("retry_share", "test", "[BACK] retries / steps written, test templates")]
    figure = new_figure(12.5, 3.9)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    models = model_order(rows)
    colours = (SERIES_PALETTE if len(models) <= len(SERIES_PALETTE)
               else list(matplotlib.colormaps["viridis"](np.linspace(0, 0.95, len(models)))))
    readings, handles = [], {}
    for model, colour in zip(models, colours):
        mine = select(rows, model=model)
        first = mine.iloc[0]
        label = f"{first['finetune']} p={float(first['retry']):g} ({int(float(first['trainable_params'])):,} trainable)"
        for ax, (metric, split, _) in zip(axes, panels):
            line = select(mine, metric=metric, language=split).sort_values("step")
            if line.empty:
                continue
            steps = line["step"].astype(float)
            handles[label] = ax.plot(steps, line["value"], marker="o", ms=3, lw=1.4, color=colour)[0]
            ax.fill_between(steps, line["ci_low"].astype(float), line["ci_high"].astype(float), color=colour, alpha=0.12)
            last = line.iloc[-1]
            readings.append(f"{label} {metric} {split}: {pct(line['value'].iloc[0])} at step {int(steps.iloc[0])}, "
                            f"{pct(last['value'])} at step {int(last['step'])}")
    for ax, (_, _, title) in zip(axes, panels):
        share_axis(ax, "share of problems" if title.startswith("accuracy") else "share of steps")
        ax.set_xlabel("fine-tuning step")
        ax.set_title(title, fontsize=8)
    legend_below(figure, list(handles.values()), list(handles), "fine-tuning (retry rate p)")
    title = "iGSM: LoRA vs full fine-tuning of an error-free model on retry data"
    figure.suptitle(title)
    return [canvas.save(figure, "syn_igsm_finetune", SYNTHETIC, title, "; ".join(readings) + ".")]


def synthetic_cfg_curve(data: Data, canvas: Canvas) -> list[Outcome]:
    """Part 1 learning curves: generation accuracy from <bos> against the training CPU minutes, one line per run."""
    rows = select(data.results, task="cfg-curve", metric="accuracy")
    if rows.empty or "train_cpu_s" not in rows.columns:
        return missing("syn_cfg_curve", SYNTHETIC, "no cfg-curve rows (train_synthetic.py --world cfg grades each checkpoint)")
    figure = new_figure(7.5, 4.2)
    ax = figure.add_subplot()
    readings, handles = [], []
    for model, colour in zip(model_order(rows), SERIES_PALETTE * 4):
        line = select(rows, model=model).sort_values("step")
        minutes = line["train_cpu_s"].astype(float) / 60
        handles.append(ax.plot(minutes, line["value"], marker="o", color=colour, lw=1.4, ms=3)[0])
        ax.fill_between(minutes, line["ci_low"].astype(float), line["ci_high"].astype(float), color=colour, alpha=0.12)
        last = line.iloc[-1]
        readings.append(f"{model}: {pct(last['value'])} [{pct(last['ci_low'])}, {pct(last['ci_high'])}] at step "
                        f"{int(last['step'])} ({float(last['train_cpu_s']) / 60:.1f} CPU min)")
    share_axis(ax, "generation accuracy from <bos>")
    ax.axhline(0.9, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("training CPU minutes")
    legend_below(figure, handles, model_order(rows), "run")
    title = "CFG learning curves: share of sampled strings the grammar accepts vs training CPU time"
    figure.suptitle(title)
    return [canvas.save(figure, "syn_cfg_curve", SYNTHETIC, title, "; ".join(readings) + ".")]


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
    tasks = [task for task in QA_TASKS if task != "bios-manipulation"]  # those have their own figure
    rows = qa_rows(select(data.results, task=tasks, metric="accuracy", layer=-1))
    if rows.empty:
        return missing("syn_qa", SYNTHETIC, f"no summary rows (layer -1) with task in {', '.join(tasks)}")
    tasks = ordered(rows["task"], tasks)
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


def synthetic_manipulation(data: Data, canvas: Canvas) -> list[Outcome]:
    """Part 3.2: one panel per fine-tuning condition, a bar pair (train / held-out people) per question,
    the majority-answer baseline of the held-out people as a black tick."""
    rows = select(data.results, task="bios-manipulation", layer=-1)
    if rows.empty or "attribute" not in rows.columns:
        return missing("syn_manipulation", SYNTHETIC, "no task 'bios-manipulation' summary rows with column attribute")
    conditions = sorted(set(select(rows, metric="accuracy")["subtask"]))
    widths = [len(set(select(rows, subtask=c)["attribute"])) + 0.6 for c in conditions]
    figure = new_figure(min(16.0, 0.55 * sum(widths) + 1.2 * len(conditions) + 1.0), 4.4)
    axes = figure.subplots(1, len(conditions), squeeze=False, width_ratios=widths, sharey=True)[0]
    readings = []
    for ax, condition in zip(axes, conditions):
        part = select(rows, subtask=condition)
        questions = list(dict.fromkeys(part["attribute"]))
        for offset, split, hatch in ((-0.2, "train", "//"), (0.2, "test", None)):
            cells = select(part, metric="accuracy", language=split).set_index("attribute").reindex(questions)
            values = cells["value"].to_numpy(dtype=float)
            errors = np.abs(np.nan_to_num(cells[["ci_low", "ci_high"]].to_numpy(dtype=float).T - values, nan=0.0))
            ax.bar(np.arange(len(questions)) + offset, values, 0.38, yerr=errors, hatch=hatch, edgecolor="white",
                   color=SERIES_PALETTE[0], alpha=0.45 if split == "train" else 1.0,
                   error_kw=dict(lw=0.8, capsize=2, ecolor="black"))
            if split == "test":
                readings.append(f"{condition} held-out: " + ", ".join(f"{q} {pct(v)}" for q, v in zip(questions, values)))
        baseline = select(part, metric="majority", language="test").set_index("attribute").reindex(questions)["value"]
        ax.hlines(baseline.to_numpy(dtype=float), np.arange(len(questions)) + 0.02, np.arange(len(questions)) + 0.38,
                  color="black", lw=1.6)
        ax.set_xticks(range(len(questions)), [q.replace("dual/", "").replace("+", "+\n") for q in questions],
                      rotation=60, ha="right", fontsize=7)
        ax.set_title(condition.rsplit("/", 1)[-1])
        share_axis(ax, "accuracy")
        ax.grid(axis="x", visible=False)
    handles = [Patch(facecolor=SERIES_PALETTE[0], alpha=0.45, hatch="//", edgecolor="white"),
               Patch(facecolor=SERIES_PALETTE[0]), Line2D([], [], color="black", lw=1.6)]
    legend_below(figure, handles, ["QA-train people", "held-out people", "majority answer (held-out)"])
    title = "Knowledge manipulation (part 3.2): accuracy per question and fine-tuning condition"
    figure.suptitle(title)
    return [canvas.save(figure, "syn_manipulation", SYNTHETIC, title, "; ".join(readings) + ".")]


BIOS_POSITIONS = {"p-probe": "P-probe: before the first value", "p-probe-before": "P-probe: before each value",
                  "q-probe": "Q-probe: the name alone"}
"""bioS probe positions (subtask `<position>/<attribute>`, `evaluate.bios_probe_set`) and their panel titles."""


def bios_conditions(results: pd.DataFrame) -> dict[str, str]:
    """Model -> its bioS training condition ("mixed/aug"), read from its QA rows (task bios-qa, subtask =
    the condition): the probe rows do not carry it. Models with none, or with several, are left out."""
    qa = select(results, task="bios-qa")
    conditions = qa.groupby("model")["subtask"].unique()
    return {model: str(values[0]) for model, values in conditions.items() if len(values) == 1}


def condition_key(condition: str) -> tuple:
    """Order conditions by mode, the non-augmented before the augmented run, then the rest."""
    mode, _, rest = condition.partition("/")
    augment, _, extra = rest.partition("/")
    return mode, augment != "noaug", augment, extra


def bios_probe_table(results: pd.DataFrame) -> pd.DataFrame:
    """Best layer of every bioS probe curve: columns model, condition, init (trained / random),
    position, attribute, layer, value, one row per curve, for the models whose condition is known."""
    conditions = bios_conditions(results)
    rows = select(results, task="bios", metric="accuracy")
    rows = rows[(rows["layer"] >= 0) & rows["model"].isin(list(conditions)) & rows["subtask"].str.contains("/")]
    if rows.empty:
        return pd.DataFrame(columns=["model", "condition", "init", "position", "attribute", "layer", "value"])
    rows = rows.assign(condition=rows["model"].map(conditions), init=[probe_kind(m)[1] for m in rows["method"]],
                       position=rows["subtask"].str.split("/").str[0], attribute=rows["subtask"].str.split("/").str[1])
    keys = ["model", "condition", "init", "position", "attribute"]
    best = rows.loc[rows.groupby(keys)["value"].idxmax(), keys + ["layer", "value"]]  # idxmax: the earliest best layer
    return best.reset_index(drop=True)


def synthetic_bios_probes(data: Data, canvas: Canvas) -> list[Outcome]:
    """Part 3.1's probe comparison: one heatmap per probe position, a row per trained model (its condition,
    e.g. mixed/noaug above mixed/aug) plus its random twin, a column per attribute, the cell the probe
    accuracy at its best layer. The paper's claim: augmentation moves the attributes to the name."""
    table = bios_probe_table(data.results)
    if table.empty:
        return missing("syn_bios_probes", SYNTHETIC, "no task 'bios' probe rows of a model with one bios-qa condition")
    positions = ordered(table["position"], list(BIOS_POSITIONS))
    attributes = ordered(table["attribute"], ATTRIBUTES)
    models = sorted(set(table["model"]), key=lambda m: (condition_key(str(table.loc[table["model"] == m, "condition"].iloc[0])), m))
    shared = table.groupby("condition")["model"].nunique()
    lines = []
    for init in ("trained", "random"):
        for model in models:
            condition = str(table.loc[table["model"] == model, "condition"].iloc[0])
            name = condition if shared[condition] == 1 else f"{condition} ({model})"
            lines.append((model, init, name if init == "trained" else f"{name}, random init"))
    figure = new_figure(min(16.0, 3.2 * len(positions) + 2.0), 0.42 * len(lines) + 2.2)
    axes = figure.subplots(1, len(positions), squeeze=False, sharey=True)[0]
    readings = []
    for ax, position in zip(axes, positions):
        part = select(table, position=position).set_index(["model", "init", "attribute"])["value"]
        matrix = np.array([[part.get((model, init, attribute), np.nan) for attribute in attributes]
                           for model, init, _ in lines], dtype=float)
        heatmap(ax, matrix, [label for *_, label in lines], [a.replace("_", "\n") for a in attributes],
                lambda v: f"{v:.0%}", fontsize=7, limits=(0.0, 1.0))
        ax.set_title(BIOS_POSITIONS.get(position, position), fontsize=9)
        readings += [f"{label} {position}: " + ", ".join(f"{a} {pct(v)}" for a, v in zip(attributes, values))
                     for (_, init, label), values in zip(lines, matrix) if init == "trained"]
    title = "bioS P- and Q-probes: accuracy at the best layer per attribute, augmented vs not"
    figure.suptitle(title)
    return [canvas.save(figure, "syn_bios_probes", SYNTHETIC, title, "; ".join(readings) + ".")]


def synthetic_cfg_attention(data: Data, canvas: Canvas) -> list[Outcome]:
    """Part 1: attention by token distance (mean over heads) and excess attention to the most adjacent
    earlier span end of each grammar level (the largest over heads), per block, trained vs random."""
    rows = select(data.results, task="cfg-attention")
    if rows.empty:
        return missing("syn_cfg_attention", SYNTHETIC, "no task 'cfg-attention' rows")
    outcomes: list[Outcome] = []
    for model in model_order(rows):
        mine = select(rows, model=model)
        mine = mine.assign(kind=mine["subtask"].str.split("/").str[0], init=mine["method"].str.rpartition("-")[2],
                           where=mine["subtask"].str.rsplit("/", n=1).str[-1])
        figure = new_figure(11, 4.2)
        left, right = figure.subplots(1, 2)
        layers = sorted(set(mine["layer"]))
        colours = dict(zip(layers, SERIES_PALETTE))
        readings = []
        for init, style in (("trained", "-"), ("random", "--")):
            part = select(mine, kind="distance", init=init)
            curves = part.assign(d=part["where"].str[1:].astype(int)).groupby(["layer", "d"])["value"].mean()
            for layer in layers:
                if layer in curves.index.get_level_values(0):
                    curve = curves.loc[layer]
                    left.plot(curve.index, curve.to_numpy(), style, color=colours[layer], lw=1.2)
                    readings.append(f"{init} block {int(layer)}: mean attention {pct(curve.get(1, np.nan))} at distance 1, "
                                    f"{pct(curve.iloc[-1])} at {int(curve.index[-1])}")
            part = select(mine, kind="boundary", init=init)
            best = part.groupby(["where", "layer"])["value"].max()
            for (level, line), marker in zip(best.groupby(level=0), "osD^v"):
                values = line.droplevel(0)
                right.plot(values.index, values.to_numpy(), style, marker=marker, color="black" if init == "trained" else "grey",
                           lw=1.2, ms=4, label=f"{level} ({init})")
                readings.append(f"{init} {level}: largest excess boundary attention {values.max():+.3f} (block {int(values.idxmax())})")
        left.set_yscale("log")
        left.set_xlabel("token distance (query - key)")
        left.set_ylabel("mean attention (over heads)")
        left.set_title("attention by distance (solid trained, dashed random)")
        right.axhline(0, color="grey", lw=0.8)
        right.set_xlabel("block")
        right.set_ylabel("excess attention (largest head)")
        right.set_title("to the most adjacent earlier span end, per level")
        right.legend(fontsize=7, frameon=False)
        legend_below(figure, [Line2D([], [], color=colours[layer]) for layer in layers], [f"block {int(layer)}" for layer in layers])
        title = f"{model}: CFG attention patterns, trained vs random model"
        figure.suptitle(title)
        outcomes.append(canvas.save(figure, f"syn_cfg_attention_{safe_name(model)}", SYNTHETIC, title, "; ".join(readings) + "."))
    return outcomes


def synthetic_cfg_diversity(data: Data, canvas: Canvas) -> list[Outcome]:
    """Part 1 diversity: the birthday-paradox support estimate of sampled strings per model and prompt,
    next to the grammar's own samples; a bar without collisions is only a lower bound (hatched)."""
    rows = select(data.results, task="cfg-generation", metric=["support_collision", "collisions"], layer=-1)
    if rows.empty:
        return missing("syn_cfg_diversity", SYNTHETIC, "no cfg-generation rows with metric support_collision")
    table = rows.pivot_table(index=["model", "method", "subtask"], columns="metric", values="value", aggfunc="mean")
    labels = [f"{model}\n{subtask} ({method})" for model, method, subtask in table.index]
    figure = new_figure(max(6.0, 0.9 * len(labels) + 2), 4.4)
    ax = figure.add_subplot()
    bounds = table["collisions"].fillna(0).to_numpy() == 0
    ax.bar(range(len(labels)), table["support_collision"].to_numpy(), color=SERIES_PALETTE[0],
           hatch=["//" if b else None for b in bounds], edgecolor="white")
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("distinct strings (birthday-paradox estimate)")
    ax.grid(axis="x", visible=False)
    readings = [f"{label.replace(chr(10), ' ')}: {value:,.0f}{' (no collision: lower bound)' if bound else ''}"
                for label, value, bound in zip(labels, table["support_collision"], bounds)]
    title = "CFG diversity: birthday-paradox estimate of distinct outputs (hatched = no collision, a lower bound)"
    figure.suptitle(title)
    return [canvas.save(figure, "syn_cfg_diversity", SYNTHETIC, title, "; ".join(readings) + ".")]


def synthetic_capacity(data: Data, canvas: Canvas) -> list[Outcome]:
    rows = select(data.results, task="capacity", metric="bits_per_param")
    if rows.empty:
        return missing("syn_capacity", SYNTHETIC, "no task 'capacity' rows with metric bits_per_param")
    if "n_params" not in rows.columns or rows["n_params"].isna().all():
        return missing("syn_capacity", SYNTHETIC, "capacity rows lack the extra column n_params")
    rows = rows.dropna(subset=["n_params"])
    rows = rows[~junk_experiment(rows)]  # those have their own figure, syn_capacity_junk
    has_exposures = "exposures" in rows.columns and rows["exposures"].notna().any()
    groups = sorted(set(rows["exposures"].dropna())) if has_exposures else [None]
    precisions = ordered(rows["method"], ["fp32", "int8", "int4"])  # one line style per precision
    styles = dict(zip(precisions, [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-.")] * 2))
    figure = new_figure(7.5, 4.2)
    ax = figure.add_subplot()
    readings = []
    for group, colour in zip(groups, SERIES_PALETTE):
        part = rows if group is None else rows[rows["exposures"] == group]
        for method in ordered(part["method"], precisions):
            points = part[part["method"] == method].sort_values("n_params")
            label = ("all runs" if group is None else f"{int(group)} exposures") + (f", {method}" if len(precisions) > 1 else "")
            marker, line = styles[method]
            ax.plot(points["n_params"], points["value"], line, marker=marker, color=colour, label=label, ms=5)
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


def junk_experiment(rows: pd.DataFrame) -> pd.Series:
    """Capacity rows of a run with junk data or a domain token (train_capacity.py --junk/--domain)."""
    junk = pd.to_numeric(rows["junk"], errors="coerce").fillna(0) > 0 if "junk" in rows.columns else False
    domain = rows["domain"].astype(str).str.lower().isin(["true", "1"]) if "domain" in rows.columns else False
    return pd.Series(junk | domain, index=rows.index, dtype=bool)


def synthetic_capacity_junk(data: Data, canvas: Canvas) -> list[Outcome]:
    """Part 3.3's junk-data experiment: fp32 bits/param of the useful people per condition (no junk, junk,
    junk + domain token), one panel per setting (size, people, exposures), the mean over seeds with its t interval."""
    rows = select(data.results, task="capacity", metric="bits_per_param", method="fp32")
    needed = ["condition", "width", "exposures", "n_params"]
    if rows.empty or any(column not in rows.columns for column in needed):
        return missing("syn_capacity_junk", SYNTHETIC, "no fp32 capacity rows with the columns " + ", ".join(needed))
    rows = rows.dropna(subset=needed).assign(marked=junk_experiment(rows))
    setting = ["n_layers", "width", "n_items", "exposures"]
    settings = [key for key, part in rows.groupby(setting) if part["marked"].any()]
    if not settings:
        return missing("syn_capacity_junk", SYNTHETIC, "no capacity run with --junk or --domain")
    figure = new_figure(max(7.0, 3.2 * len(settings) + 1.2), 3.8)
    axes = figure.subplots(1, len(settings), squeeze=False, sharey=True).ravel()
    readings = []
    for ax, key in zip(axes, settings):
        part = rows[(rows[setting] == pd.Series(key, index=setting)).all(axis=1)]
        conditions = sorted(set(part["condition"]), key=lambda c: (("domain" in c), c != "no junk", c))
        texts = []
        for x, (condition, colour) in enumerate(zip(conditions, SERIES_PALETTE)):
            values = part.loc[part["condition"] == condition, "value"].to_numpy(dtype=float)
            low, high = t_interval(values)
            ax.bar(x, values.mean(), color=colour, alpha=0.6, width=0.7)
            ax.plot([x] * len(values), values, "o", color="black", ms=3)
            if not math.isnan(low):
                ax.errorbar(x, values.mean(), yerr=[[values.mean() - low], [high - values.mean()]], color="black", capsize=4)
            interval = "" if math.isnan(low) else f" [{low:.2f}, {high:.2f}]"
            texts.append(f"{condition} {values.mean():.2f}{interval} ({len(values)} seed{'s' * (len(values) > 1)})")
        ax.set_xticks(range(len(conditions)), [c.replace(" + ", "\n+ ") for c in conditions], fontsize=8)
        n_layers, width, people, exposures = (int(v) for v in key)
        ax.set_title(f"{n_layers} x {width}, {people:,} people, {exposures:,} exposures", fontsize=9)
        readings.append(f"{n_layers} x {width}, {people:,} people, {exposures:,} useful exposures: " + ", ".join(texts))
    axes[0].set_ylabel("bits per parameter (useful people, fp32)")
    axes[0].set_ylim(bottom=0)
    title = "Knowledge capacity with junk data, and a domain token on useful biographies"
    figure.suptitle(title)
    return [canvas.save(figure, "syn_capacity_junk", SYNTHETIC, title,
                        "Mean over seeds, 95% t interval where there are 2 or more; " + "; ".join(readings) + ".")]


CANON_ORDER = ["none", "A", "ABCD"]


def synthetic_canon(data: Data, canvas: Canvas) -> list[Outcome]:
    """Canon-layer ablation on k-hop lookup: accuracy by hop count, one panel per depth, one line per placement."""
    rows = select(data.results, task="canon-khop", metric="accuracy")
    if rows.empty or "canon" not in rows.columns:
        return missing("syn_canon", SYNTHETIC, "no task 'canon-khop' rows with the extra column canon")
    rows = rows.assign(canon=rows["canon"].fillna("none").astype(str),
                       hop=[s.rsplit("/", 1)[-1] for s in rows["subtask"]])
    depths = sorted(set(rows["n_layers"].astype(int)))
    figure = new_figure(3.6 * len(depths) + 1.0, 3.6)
    axes = figure.subplots(1, len(depths), squeeze=False, sharey=True).ravel()
    colours = dict(zip(ordered(rows["canon"], CANON_ORDER), SERIES_PALETTE))
    readings, handles = [], {}
    for ax, n_layers in zip(axes, depths):
        mine = rows[rows["n_layers"].astype(int) == n_layers]
        overall = []
        for canon in ordered(mine["canon"], CANON_ORDER):
            line = mine[(mine["canon"] == canon) & (mine["hop"] != "all")]
            line = line.assign(k=[int(h.split("=")[1]) for h in line["hop"]]).sort_values("k")
            errors = [line["value"] - line["ci_low"], line["ci_high"] - line["value"]]
            handles[canon] = ax.errorbar(line["k"], line["value"], yerr=errors, marker="o", capsize=3,
                                         color=colours[canon], label=f"Canon {canon}")
            total = mine[(mine["canon"] == canon) & (mine["hop"] == "all")]
            if not total.empty:
                first = total.iloc[0]
                cost = f", {first['train_cpu_s']:.0f} CPU s" if "train_cpu_s" in total.columns else ""
                params = f"{int(first['n_params']):,} params" if "n_params" in total.columns else ""
                overall.append(f"{canon} {pct(first['value'])} ({params}{cost})")
        if "nodes" in mine.columns and mine["nodes"].notna().any():
            ax.axhline(1 / float(mine["nodes"].dropna().iloc[0]), color="grey", ls=":", lw=1)
        ax.set_title(f"{n_layers} layers")
        ax.set_xlabel("hops k")
        ax.set_xticks(sorted({int(h.split("=")[1]) for h in mine["hop"] if h != "all"}))
        ax.set_ylim(0, 1.02)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        readings.append(f"{n_layers} layers: " + ", ".join(overall))
    axes[0].set_ylabel("answer accuracy (held-out documents)")
    legend_below(figure, list(handles.values()), [f"Canon {c}" for c in handles])
    title = "Canon layers on k-hop lookup: accuracy by hop count (dotted: chance)"
    figure.suptitle(title)
    return [canvas.save(figure, "syn_canon", SYNTHETIC, title, "Accuracy over all hops; " + "; ".join(readings) + ".")]
