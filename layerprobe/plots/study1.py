"""Study 1 (probing LLaMA across scales and layers): multiple-choice accuracy per layer, per task and model."""

from __future__ import annotations

import math
from collections.abc import Iterable

import matplotlib
import numpy as np
import pandas as pd

from layerprobe.plots.common import (
    SERIES_PALETTE, Canvas, Data, Drawn, Outcome, best_layer, curve_reading, depth, heatmap, layer_axis, legend_below,
    missing, model_order, new_figure, ordered, overall, pct, plot_curve, safe_name, select, share_axis, table_layers,
)

STUDY1_TASKS = ["calculation", "mps-cal", "mps-rea", "xmps-cal", "xmps-rea", "factual", "truthfulqa", "logical", "mmlu",
                "mmlu-letters"]
XMPS_TASKS = ["xmps-cal", "xmps-rea"]
LANGUAGES = ["en", "es", "fr", "de", "zh", "ja", "th"]
OPERATIONS = ["add", "sub", "mul", "div", "mix-2", "mix-3"]
DIGITS = ["1-2", "3-4", "5-6"]
NUMBER_TYPES = ["int", "float"]
METHOD_PREFERENCE = ["lens-norm", "lens-raw", "probe"]
"""Which study-1 method the per-model figures show when a CSV holds several."""

STUDY1 = "Study 1: multiple-choice accuracy per layer"


def primary_method(methods: Iterable[str]) -> str:
    methods = sorted(set(methods))
    return next((m for m in METHOD_PREFERENCE if m in methods), methods[0])


def headline_metric(task: str) -> str:
    return "mc1" if task == "truthfulqa" else "accuracy"


def headline_rows(rows: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """The headline metric of one task and method and its rows: MC1 where the lens reports it
    (TruthfulQA), else accuracy (which is what the TruthfulQA probe reports)."""
    metric = "mc1" if (rows["metric"] == "mc1").any() else "accuracy"
    return metric, rows[rows["metric"] == metric]


def study1_rows(data: Data) -> pd.DataFrame:
    return select(data.results, task=STUDY1_TASKS)


def model_task_curves(rows: pd.DataFrame, model: str) -> tuple[str, dict[str, pd.DataFrame]]:
    """The primary method of a model and its headline curve per study-1 task (column `metric` says which)."""
    mine = select(rows, model=model)
    method = primary_method(mine["method"])
    curves = {}
    for task in ordered(mine["task"], STUDY1_TASKS):
        metric, part = headline_rows(select(mine, task=task, method=method))
        if not part.empty and (part["layer"] >= 0).any():
            curves[task] = overall(part).assign(metric=metric)
    return method, curves


def task_label(task: str, curve: pd.DataFrame) -> str:
    metric = curve["metric"].iloc[0]
    return task if metric == "accuracy" else f"{task} ({metric.upper()})"


def study1_heatmaps(data: Data, canvas: Canvas) -> list[Outcome]:
    rows = study1_rows(data)
    if rows.empty:
        return missing("s1_heatmap", STUDY1, f"no rows with task in {', '.join(STUDY1_TASKS)}")
    outcomes: list[Outcome] = []
    for model in model_order(rows):
        method, curves = model_task_curves(rows, model)
        if not curves:
            outcomes += missing(f"s1_heatmap_{safe_name(model)}", STUDY1, f"{model}: no per-layer rows for {method}")
            continue
        n_layers = depth(select(rows, model=model))
        layers = table_layers(n_layers)
        tasks = list(curves)
        matrix = np.array([[curves[t]["value"].get(layer, np.nan) for t in tasks] for layer in layers])
        best = np.zeros_like(matrix, dtype=bool)
        for j in range(len(tasks)):
            if np.isfinite(matrix[:, j]).any():
                best[np.nanargmax(matrix[:, j]), j] = True
        figure = new_figure(1.0 * len(tasks) + 2.2, 0.24 * len(layers) + 1.6)
        ax = figure.add_subplot()
        image = heatmap(ax, matrix * 100, [str(layer) for layer in layers],
                        [task_label(t, curves[t]).replace(" ", "\n") for t in tasks], lambda v: f"{v:.1f}", 7, best)
        ax.xaxis.tick_top()
        ax.set_ylabel("layer (0 = embeddings)")
        figure.colorbar(image, ax=ax, label="accuracy (%)", shrink=0.6)
        thinned = "" if len(layers) == n_layers + 1 else f", layers in steps of {layers[1] - layers[0]}"
        title = f"{model}: accuracy (%) per layer and task, {method}{thinned}"
        ax.set_title(f"{model}: accuracy (%) per layer, {method}{thinned}\n(bold = best layer of the task)", fontsize=9)
        reading = "; ".join(curve_reading(task_label(t, curves[t]), curves[t], n_layers) for t in tasks) + "."
        outcomes.append(canvas.save(figure, f"s1_heatmap_{safe_name(model)}", STUDY1, title, reading))
    return outcomes


def study1_curves(data: Data, canvas: Canvas) -> list[Outcome]:
    rows = study1_rows(data)
    if rows.empty:
        return missing("s1_curves", STUDY1, f"no rows with task in {', '.join(STUDY1_TASKS)}")
    outcomes: list[Outcome] = []
    for task in ordered(rows["task"], STUDY1_TASKS):
        for metric in sorted(set(select(rows, task=task)["metric"]) - {"control"}):
            lines = {}  # label -> (model, n_layers, curve), the primary method of each model
            for model in model_order(rows):
                mine = select(rows, model=model, task=task)
                if mine.empty:
                    continue
                method = primary_method(mine["method"])
                part = select(mine, method=method, metric=metric)
                if (part["layer"] >= 0).any():
                    lines[f"{model} ({method})"] = (model, depth(mine), overall(part))
            if lines:
                outcomes.append(draw_task_curves(canvas, task, metric, lines))
    return outcomes


def draw_task_curves(canvas: Canvas, task: str, metric: str,
                     lines: dict[str, tuple[str, int, pd.DataFrame]]) -> Drawn:
    """One task's metric per layer, by absolute layer and by relative depth, one line per model."""
    figure = new_figure(10, 3.8)
    absolute, relative = figure.subplots(1, 2)
    for label, (model, n_layers, curve) in lines.items():
        layers = curve.index.to_numpy()
        plot_curve(absolute, layers, curve, canvas.colour(model), label)
        plot_curve(relative, layers / n_layers, curve, canvas.colour(model), label)
    layer_axis(absolute, max(n_layers for _, n_layers, _ in lines.values()))
    relative.set_xlim(-0.02, 1.02)
    relative.set_xlabel("relative depth (layer / n_layers)")
    for ax in (absolute, relative):
        share_axis(ax, metric)
    absolute.set_title("by layer")
    relative.set_title("by relative depth")
    title = f"{task}: {metric} per layer (95% CI bands)"
    figure.suptitle(title)
    legend_below(figure, *absolute.get_legend_handles_labels())
    name = f"s1_curves_{safe_name(task)}" + ("" if metric == headline_metric(task) else f"_{metric}")
    reading = "; ".join(curve_reading(label, curve, n_layers) for label, (_, n_layers, curve) in lines.items())
    return canvas.save(figure, name, STUDY1, title, reading + ".")


def study1_sizes(data: Data, canvas: Canvas) -> list[Outcome]:
    rows = study1_rows(data)
    if rows.empty:
        return missing("s1_sizes", STUDY1, f"no rows with task in {', '.join(STUDY1_TASKS)}")
    models = model_order(rows)
    per_model = {model: model_task_curves(rows, model) for model in models}
    tasks = ordered({t for _, curves in per_model.values() for t in curves}, STUDY1_TASKS)
    if not tasks:
        return missing("s1_sizes", STUDY1, "no per-layer study-1 rows")
    figure = new_figure(max(7.0, 1.1 * len(tasks) + 2.5), 6.4)
    last_ax, best_ax = figure.subplots(2, 1, sharex=True)
    width = 0.8 / len(models)
    readings = []
    for index, model in enumerate(models):
        method, curves = per_model[model]
        n_layers = depth(select(rows, model=model))
        offsets = np.arange(len(tasks)) + (index - (len(models) - 1) / 2) * width
        last_values, best_values, best_layers = [], [], []
        for task in tasks:
            curve = curves.get(task)
            if curve is None:
                last_values.append(np.nan), best_values.append(np.nan), best_layers.append(None)
                continue
            last_values.append(float(curve["value"].get(n_layers, np.nan)))  # NaN while a run is unfinished
            layer, value = best_layer(curve)
            best_values.append(value), best_layers.append(layer)
        label = f"{model} ({method}, {n_layers} layers)"
        last_ax.bar(offsets, last_values, width * 0.92, color=canvas.colour(model), label=label)
        best_ax.bar(offsets, best_values, width * 0.92, color=canvas.colour(model))
        for x, value, layer in zip(offsets, best_values, best_layers):
            if layer is not None:
                best_ax.text(x, value + 0.01, f"L{layer}", ha="center", va="bottom", fontsize=6.5, rotation=90)
        finished = np.isfinite(last_values)
        at_last = (f"mean over {finished.sum()} tasks {pct(np.mean(np.array(last_values)[finished]))} at the last layer"
                   if finished.any() else f"no task has reached layer {n_layers} yet")
        readings.append(f"{model}: {at_last}, {pct(np.nanmean(best_values))} at each task's best layer")
    for ax, what in ((last_ax, "at the last layer"), (best_ax, "at each model's best layer (label = layer)")):
        share_axis(ax, "accuracy", top=1.12)
        ax.set_yticks(np.linspace(0, 1, 5))
        ax.set_title(what)
        ax.grid(axis="x", visible=False)
    labels = [next(task_label(t, curves[t]) for _, curves in per_model.values() if t in curves) for t in tasks]
    best_ax.set_xticks(range(len(tasks)), labels, rotation=20, ha="right")
    title = "Accuracy by task across models: last layer vs best layer"
    figure.suptitle(title)
    legend_below(figure, *last_ax.get_legend_handles_labels())
    return [canvas.save(figure, "s1_sizes", STUDY1, title, "; ".join(readings) + ".")]


def radar_layers(n_layers: int, best: int) -> list[int]:
    """Quartiles of depth, the last layer and the best layer: the layers a radar chart compares."""
    return sorted({round(n_layers * q) for q in (0.25, 0.5, 0.75, 1.0)} | {best})


def study1_radar(data: Data, canvas: Canvas) -> list[Outcome]:
    rows = select(data.results, task="calculation")
    rows = rows[rows["subtask"].str.count("/") == 2]
    if rows.empty:
        return missing("s1_radar", STUDY1, "no calculation rows with subtask '<op>/<digits>/<type>'")
    outcomes: list[Outcome] = []
    angles = np.linspace(0, 2 * np.pi, len(OPERATIONS), endpoint=False)
    for model in model_order(rows):
        mine = select(rows, model=model)
        method = primary_method(mine["method"])
        mine = select(mine, method=method, metric="accuracy").query("layer >= 0")
        parts = mine["subtask"].str.split("/", expand=True)
        mine = mine.assign(op=parts[0], digits=parts[1], number=parts[2])
        n_layers = depth(mine)
        by_layer = mine.groupby("layer")["value"].mean()
        best = int(by_layer.idxmax())
        layers = radar_layers(n_layers, best)
        digit_ranges = ordered(mine["digits"], DIGITS)
        types = ordered(mine["number"], NUMBER_TYPES)
        figure = new_figure(3.3 * len(digit_ranges) + 1.2, 3.4 * len(types) + 0.6)
        colours = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(layers)))
        for r, number in enumerate(types):
            for c, digits in enumerate(digit_ranges):
                ax = figure.add_subplot(len(types), len(digit_ranges), r * len(digit_ranges) + c + 1, projection="polar")
                cell = select(mine, digits=digits, number=number).pivot_table(index="layer", columns="op", values="value")
                cell = cell.reindex(index=layers, columns=OPERATIONS)
                for layer, colour in zip(layers, colours):
                    values = cell.loc[layer].to_numpy()
                    closed = np.append(values, values[0])
                    ax.plot(np.append(angles, angles[0]), closed, color=colour, lw=1.4, label=f"layer {layer}")
                    ax.fill(np.append(angles, angles[0]), np.nan_to_num(closed), color=colour, alpha=0.05)
                ax.set_xticks(angles, OPERATIONS)
                ax.set_ylim(0, 1)
                ax.set_yticks([0.25, 0.5, 0.75, 1.0], ["25%", "50%", "75%", ""], fontsize=6.5, color="grey")
                ax.set_rlabel_position(90)
                ax.set_title(f"{digits} digits, {number}", pad=12)
        handles, labels = figure.axes[0].get_legend_handles_labels()
        labels = [f"{label} (best)" if label == f"layer {best}" else label for label in labels]
        legend_below(figure, handles, labels)
        title = f"{model}: calculation accuracy per operation at selected layers ({method})"
        figure.suptitle(title)
        last = select(mine, layer=n_layers).groupby("op")["value"].mean()
        at_best = select(mine, layer=best).groupby("op")["value"].mean()
        def per_op(means: pd.Series) -> str:
            return ", ".join(f"{op} {pct(means[op])}" for op in ordered(means.index, OPERATIONS))

        reading = (f"{model}: accuracy averaged over the operation/digits/type cells peaks at layer {best} of "
                   f"{n_layers} ({pct(by_layer[best])}). Per operation at layer {n_layers}: {per_op(last)}"
                   + (f"; hardest {last.idxmin()}, easiest {last.idxmax()}" if len(last) else "")
                   + f". At layer {best}: {per_op(at_best)}.")
        outcomes.append(canvas.save(figure, f"s1_radar_{safe_name(model)}", STUDY1, title, reading))
    return outcomes


def study1_xmps(data: Data, canvas: Canvas) -> list[Outcome]:
    rows = select(data.results, task=XMPS_TASKS)
    rows = rows[rows["layer"] >= 0]
    if rows.empty:
        return missing("s1_xmps", STUDY1, "no xmps-cal or xmps-rea rows")
    outcomes: list[Outcome] = []
    for model in model_order(rows):
        mine = select(rows, model=model)
        method = primary_method(mine["method"])
        mine = select(mine, method=method, metric="accuracy")
        tasks = ordered(mine["task"], XMPS_TASKS)
        if not tasks:
            outcomes += missing(f"s1_xmps_{safe_name(model)}", STUDY1, f"{model}: no per-layer accuracy rows for {method}")
            continue
        n_layers = depth(mine)
        layers = table_layers(n_layers)
        languages = {t: ordered(select(mine, task=t)["language"], LANGUAGES) for t in tasks}
        heights = [len(languages[t]) for t in tasks]
        figure = new_figure(max(6.0, 0.3 * len(layers) + 2.2), 0.32 * sum(heights) + 1.3 * len(tasks) + 0.4)
        axes = figure.subplots(len(tasks), 1, squeeze=False, height_ratios=heights)[:, 0]
        readings = []
        for ax, task in zip(axes, tasks):
            part = select(mine, task=task)
            if (part["subtask"] == "all").any():
                part = select(part, subtask="all")
            table = part.groupby(["language", "layer"])["value"].mean().unstack("layer")
            table = table.reindex(index=languages[task], columns=layers)
            image = heatmap(ax, table.to_numpy() * 100, languages[task], [str(layer) for layer in layers],
                            lambda v: f"{v:.0f}", 6.5)
            figure.colorbar(image, ax=ax, label="accuracy (%)", pad=0.01)
            ax.set_xlabel("layer (0 = embeddings)")
            ax.set_ylabel("language")
            ax.set_title(f"{task}")
            per_language = []
            for language in languages[task]:
                row = table.loc[language].dropna()
                if len(row):
                    per_language.append(f"{language} best layer {int(row.idxmax())} ({pct(row.max())})")
            readings.append(f"{task}: " + ", ".join(per_language))
        title = f"{model}: cross-lingual accuracy (%) per language and layer ({method})"
        figure.suptitle(title)
        outcomes.append(canvas.save(figure, f"s1_xmps_{safe_name(model)}", STUDY1, title, "; ".join(readings) + "."))
    return outcomes


def study1_lens_vs_probe(data: Data, canvas: Canvas) -> list[Outcome]:
    rows = study1_rows(data)
    outcomes: list[Outcome] = []
    for model in model_order(rows):
        mine = select(rows, model=model)
        tasks = [t for t in ordered(mine["task"], STUDY1_TASKS)
                 if select(mine, task=t).query("metric != 'control'")["method"].nunique() > 1]
        if not tasks:
            continue
        n_layers = depth(mine)
        methods = sorted(set(mine["method"]))
        colours = dict(zip(methods, SERIES_PALETTE))
        columns = min(3, len(tasks))
        n_rows = math.ceil(len(tasks) / columns)
        figure = new_figure(3.6 * columns + 1.8, 2.9 * n_rows + 0.6)
        axes = figure.subplots(n_rows, columns, squeeze=False).ravel()
        readings = []
        for ax, task in zip(axes, tasks):
            part = select(mine, task=task)
            for method in sorted(set(part["method"])):
                metric, curve_rows = headline_rows(select(part, method=method))
                if curve_rows.empty:
                    continue
                curve = overall(curve_rows)
                plot_curve(ax, curve.index.to_numpy(), curve, colours[method], method)
                layer, value = best_layer(curve)
                readings.append(f"{task} {method} ({metric}) best layer {layer} ({pct(value)})")
            control = select(part, metric="control")
            if not control.empty:
                curve = overall(control)
                ax.plot(curve.index, curve["value"], ":", color="grey", lw=1.4, label="probe control task (random targets)")
            layer_axis(ax, n_layers)
            share_axis(ax, "accuracy" if task != "truthfulqa" else "MC1 (lens) / accuracy (probe)")
            ax.set_title(task)
        for ax in axes[len(tasks):]:
            ax.set_visible(False)
        handles = {}
        for ax in axes[:len(tasks)]:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(label, handle)
        legend_below(figure, list(handles.values()), list(handles), "method")
        title = f"{model}: lens vs linear probe per layer"
        figure.suptitle(title)
        outcomes.append(canvas.save(figure, f"s1_lens_probe_{safe_name(model)}", STUDY1, title, "; ".join(readings) + "."))
    return outcomes or missing("s1_lens_probe", STUDY1, "no study-1 task has more than one method (lens and probe) for a model")
