"""Figures from the results CSVs only (never a model), each with a one-paragraph reading of its numbers.

Every figure builder takes the loaded `Data` and a `Canvas` and returns what it drew (`Drawn`, with
the reading the report prints under the figure) or why it drew nothing (`Skipped`). A run over
partial data therefore draws what it can and lists the rest instead of failing.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter, MaxNLocator, PercentFormatter

from layerprobe.errors import DataError
from layerprobe.results import COLUMNS, read_results

STUDY1_TASKS = ["calculation", "mps-cal", "mps-rea", "xmps-cal", "xmps-rea", "factual", "truthfulqa", "logical", "mmlu",
                "mmlu-letters"]
XMPS_TASKS = ["xmps-cal", "xmps-rea"]
LANGUAGES = ["en", "es", "fr", "de", "zh", "ja", "th"]
OPERATIONS = ["add", "sub", "mul", "div", "mix-2", "mix-3"]
DIGITS = ["1-2", "3-4", "5-6"]
NUMBER_TYPES = ["int", "float"]
METHOD_PREFERENCE = ["lens-norm", "lens-raw", "probe"]
"""Which study-1 method the per-model figures show when a CSV holds several."""
LENSES = ["logit-lens", "tuned-lens"]
LENS_STYLE = {"logit-lens": "-", "tuned-lens": "--"}
FREQUENCY_BUCKETS = ["top10", "11-100", "101-1000", "rest"]
SYNTHETIC_PROBE_TASKS = ["cfg", "bios", "igsm"]
QA_TASKS = ["cfg-generation", "bios-qa", "bios-manipulation", "igsm-accuracy"]
SYNTHETIC_TASKS = SYNTHETIC_PROBE_TASKS + QA_TASKS + ["capacity"]
TRAINING_COLUMNS = ["run", "step", "loss"]
NUMERIC_COLUMNS = ["layer", "n_layers", "value", "n_items", "ci_low", "ci_high"]
ROW_KEY = ["model", "task", "subtask", "language", "method", "layer", "metric"]
NUMERIC_EXTRAS = ["k", "n_params", "exposures"]
DISTINGUISHING_EXTRAS = NUMERIC_EXTRAS + ["quantised", "attribute"]
"""Extra columns that tell apart rows sharing the ROW_KEY (earliest layer per k, capacity runs, QA per question)."""
MAX_TABLE_LAYERS = 41
"""Heatmaps with more layers than this show every n-th layer so cell numbers stay readable."""

STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
    "legend.fontsize": 8, "figure.titlesize": 11, "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.alpha": 0.3, "svg.fonttype": "none", "savefig.facecolor": "white",
}
MODEL_PALETTE = [matplotlib.colors.to_hex(c) for c in matplotlib.colormaps["tab10"].colors]
SERIES_PALETTE = MODEL_PALETTE + [matplotlib.colors.to_hex(c) for c in matplotlib.colormaps["Dark2"].colors]


# ---------------------------------------------------------------- data


@dataclass
class CsvFile:
    path: Path
    modified: float
    rows: int
    kind: str  # "results" or "training"
    extra_columns: list[str]


@dataclass
class Data:
    results: pd.DataFrame
    """Schema rows of every results CSV (later files win on duplicate rows), plus column `source`."""
    training: pd.DataFrame
    """Rows of every train_*.csv (run, step, loss and optional tokens, lr)."""
    files: list[CsvFile]


def _numeric(frame: pd.DataFrame, columns: Iterable[str], path: Path) -> None:
    """Coerce columns to numbers in place; a non-empty entry that is not a number is a DataError."""
    for column in columns:
        if column not in frame.columns:
            continue
        raw = frame[column]
        numbers = pd.to_numeric(raw, errors="coerce")
        bad = numbers.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
        if bad.any():
            index = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(path, f"'{raw.iloc[index]}' is not a number", line=index + 2, field=column)
        frame[column] = numbers


def load_data(folder: str | Path) -> Data:
    """Read every CSV in `folder`: train_*.csv as training curves, all others as results CSVs."""
    folder = Path(folder)
    paths = sorted(folder.glob("*.csv"), key=lambda p: (p.stat().st_mtime, p.name)) if folder.is_dir() else []
    results, training, files = [], [], []
    for path in paths:
        is_training = path.name.startswith("train_")
        frame = read_results(path, required=TRAINING_COLUMNS if is_training else COLUMNS)
        known = TRAINING_COLUMNS + ["tokens", "lr"] if is_training else COLUMNS
        files.append(CsvFile(path, path.stat().st_mtime, len(frame), "training" if is_training else "results",
                             [c for c in frame.columns if c not in known]))
        if is_training:
            _numeric(frame, ["step", "tokens", "loss", "lr"], path)
            frame["run"] = frame["run"].astype(str)
            training.append(frame.assign(source=path.name))
        else:
            _numeric(frame, NUMERIC_COLUMNS + NUMERIC_EXTRAS, path)
            for column in ("model", "task", "method", "metric"):
                frame[column] = frame[column].fillna("").astype(str)
            results.append(frame.assign(source=path.name))
    results_frame = pd.concat(results, ignore_index=True) if results else pd.DataFrame(columns=COLUMNS + ["source"])
    results_frame = results_frame.dropna(subset=["value", "layer"])
    if not results_frame.empty:
        results_frame["layer"] = results_frame["layer"].astype(int)
        key = ROW_KEY + [c for c in DISTINGUISHING_EXTRAS if c in results_frame.columns]
        results_frame = results_frame.drop_duplicates(subset=key, keep="last").reset_index(drop=True)
    training_frame = (pd.concat(training, ignore_index=True) if training
                      else pd.DataFrame(columns=TRAINING_COLUMNS + ["source"]))
    return Data(results_frame, training_frame.dropna(subset=["step", "loss"]), files)


def select(frame: pd.DataFrame, **equal: object) -> pd.DataFrame:
    """Rows whose columns equal the given values (a list value means 'any of')."""
    mask = np.ones(len(frame), dtype=bool)
    for column, wanted in equal.items():
        values = frame[column]
        mask &= values.isin(wanted).to_numpy() if isinstance(wanted, list) else (values == wanted).to_numpy()
    return frame.loc[mask]


def overall(rows: pd.DataFrame) -> pd.DataFrame:
    """Per-layer value over all items of one (model, task, method, metric).

    Uses subtask "all" where the CSV reports it; otherwise (several subtasks or languages) the
    n_items-weighted mean of the parts, whose confidence interval is unknown and left empty.
    """
    rows = rows[rows["layer"] >= 0]
    if (rows["subtask"] == "all").any():
        rows = rows[rows["subtask"] == "all"]
    weights = rows["n_items"].fillna(1).clip(lower=1)
    table = rows.assign(weight=weights, weighted=weights * rows["value"]).groupby("layer").agg(
        weighted=("weighted", "sum"), weight=("weight", "sum"), parts=("value", "size"),
        ci_low=("ci_low", "first"), ci_high=("ci_high", "first"), n_items=("n_items", "sum"),
        n_layers=("n_layers", "max"))
    table["value"] = table["weighted"] / table["weight"]
    table.loc[table["parts"] > 1, ["ci_low", "ci_high"]] = np.nan
    return table[["value", "ci_low", "ci_high", "n_items", "n_layers"]]


def depth(rows: pd.DataFrame) -> int:
    """Number of blocks L of the model behind these rows (layers run 0..L)."""
    known = rows["n_layers"].dropna()
    return int(known.max()) if len(known) else int(rows["layer"].max())


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


def ordered(values: Iterable[str], preferred: Sequence[str]) -> list[str]:
    """Known values in their canonical order, then the unknown ones alphabetically."""
    values = set(values)
    return [v for v in preferred if v in values] + sorted(values - set(preferred))


def model_order(results: pd.DataFrame) -> list[str]:
    """Models from shallow to deep (a stand-in for small to large), ties by name."""
    if results.empty:
        return []
    deepest = results.groupby("model")["n_layers"].max().fillna(0)
    return sorted(deepest.index, key=lambda m: (deepest[m], m))


def colour_order(results: pd.DataFrame) -> list[str]:
    """Models in the order they get colours: the pretrained ones of studies 1 and 2 first, so the
    usual handful keeps the first palette colours, then the synthetic ones (capacity runs, coloured
    by exposures instead, take none)."""
    pretrained = model_order(results[~results["task"].isin(SYNTHETIC_TASKS)])
    synthetic = model_order(results[results["task"].isin(SYNTHETIC_PROBE_TASKS + QA_TASKS)])
    return pretrained + [m for m in synthetic if m not in pretrained]


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "unnamed"


def pct(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.1%}"


def best_layer(curve: pd.DataFrame) -> tuple[int, float]:
    """Earliest layer with the highest value."""
    layer = int(curve["value"].idxmax())
    return layer, float(curve.loc[layer, "value"])


def curve_reading(label: str, curve: pd.DataFrame, n_layers: int) -> str:
    """'label: best layer 24 of 30, 61.2% (95% CI 58.0%-64.3%), last layer 55.1%'."""
    layer, value = best_layer(curve)
    text = f"{label}: best layer {layer} of {n_layers}, {pct(value)}"
    low, high = curve.loc[layer, "ci_low"], curve.loc[layer, "ci_high"]
    if np.isfinite(low) and np.isfinite(high):
        text += f" (95% CI {pct(low)}-{pct(high)})"
    last = int(curve.index.max())
    return text + f", layer {last} {pct(curve.loc[last, 'value'])}"


def table_layers(n_layers: int) -> list[int]:
    """Layers a heatmap shows: all of them, or every n-th plus the last for very deep models."""
    stride = math.ceil((n_layers + 1) / MAX_TABLE_LAYERS)
    return sorted(set(range(0, n_layers + 1, stride)) | {n_layers})


# ---------------------------------------------------------------- drawing


@dataclass
class Drawn:
    name: str
    section: str
    title: str
    files: list[Path]
    reading: str


@dataclass
class Skipped:
    name: str
    section: str
    reason: str


Outcome = Drawn | Skipped


@dataclass
class Canvas:
    """Where and how figures are written; holds the model colours so every figure agrees."""

    folder: Path
    dpi: int = 300
    formats: tuple[str, ...] = ("png", "svg")
    colours: dict[str, str] = field(default_factory=dict)

    def colour(self, model: str) -> str:
        return self.colours.get(model, "black")

    def save(self, figure: Figure, name: str, section: str, title: str, reading: str) -> Drawn:
        """Write the figure in every format; each file appears whole or not at all (temp file + rename)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        files = []
        for extension in self.formats:
            path = self.folder / f"{name}.{extension}"
            partial = path.with_name(f".{path.name}.tmp")
            try:
                figure.savefig(partial, format=extension, dpi=self.dpi)
                os.replace(partial, path)
            finally:
                partial.unlink(missing_ok=True)
            files.append(path)
        return Drawn(name, section, title, files, reading)


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def layer_axis(ax: Axes, n_layers: int, axis: str = "x") -> None:
    """Integer layer ticks from 0 (embeddings) to L with a little room at both ends."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(MaxNLocator(integer=True, nbins=min(n_layers + 1, 16)))
    limits = (-0.5, n_layers + 0.5)
    (ax.set_xlim if axis == "x" else ax.set_ylim)(*limits)
    (ax.set_xlabel if axis == "x" else ax.set_ylabel)("layer (0 = embeddings)")


def share_axis(ax: Axes, label: str, axis: str = "y", top: float = 1.0) -> None:
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(PercentFormatter(1.0, decimals=0))
    (ax.set_ylim if axis == "y" else ax.set_xlim)(-0.02, top + 0.02)
    (ax.set_ylabel if axis == "y" else ax.set_xlabel)(label)


def plot_curve(ax: Axes, x: np.ndarray, curve: pd.DataFrame, colour: str, label: str, style: str = "-") -> None:
    """A per-layer line with its 95% band (where the CSV has one) and a dot at the best layer."""
    ax.plot(x, curve["value"], style, color=colour, label=label, lw=1.6)
    if curve["ci_low"].notna().any():
        ax.fill_between(x, curve["ci_low"], curve["ci_high"], color=colour, alpha=0.15, lw=0)
    best = int(np.argmax(curve["value"].to_numpy()))
    ax.plot(x[best], curve["value"].iloc[best], "o", color=colour, ms=5)


def heatmap(ax: Axes, matrix: np.ndarray, rows: Sequence[str], columns: Sequence[str],
            fmt: Callable[[float], str], fontsize: float, bold: np.ndarray | None = None) -> AxesImage:
    """Coloured cells with their numbers; text turns white on dark cells; `bold` marks cells to stress."""
    finite = matrix[np.isfinite(matrix)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    cmap = matplotlib.colormaps["YlGnBu"]
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=low, vmax=high, aspect="auto", interpolation="none")
    ax.grid(False)
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(rows)), rows)
    ax.tick_params(length=0)
    for (i, j), value in np.ndenumerate(matrix):
        shade = (value - low) / (high - low) if np.isfinite(value) else 0.0
        text = ax.text(j, i, fmt(value) if np.isfinite(value) else "-", ha="center", va="center", fontsize=fontsize,
                       color="white" if shade > 0.6 else "black",
                       fontweight="bold" if bold is not None and bold[i, j] else "normal")
        text.set_in_layout(False)  # cells never stick out of the axes; skipping them keeps layout fast
    return image


def legend_below(figure: Figure, handles: list, labels: list[str], title: str | None = None) -> None:
    """One legend under the panels, as many columns as the figure width allows: never covers a title."""
    longest = max((len(label) for label in labels), default=1)
    columns = max(1, min(len(labels), int(figure.get_figwidth() / (0.075 * longest + 0.6))))
    figure.legend(handles, labels, loc="outside lower center", ncols=columns, title=title, frameon=False)


def missing(name: str, section: str, reason: str) -> list[Outcome]:
    return [Skipped(name, section, reason)]


# ---------------------------------------------------------------- study 1

STUDY1 = "Study 1: multiple-choice accuracy per layer"


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


# ---------------------------------------------------------------- study 2

STUDY2 = "Study 2: how the answer forms across depth"


def study2_earliest(data: Data, canvas: Canvas) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for task, what in (("pos", "part-of-speech tag"), ("facts", "answer length / token position")):
        rows = select(data.results, task=task, metric="earliest_layer")
        if rows.empty:
            outcomes += missing(f"s2_earliest_{task}", STUDY2, f"no task '{task}' rows with metric earliest_layer")
            continue
        if "k" not in rows.columns or rows["k"].isna().all():
            outcomes += missing(f"s2_earliest_{task}", STUDY2, f"task '{task}' earliest_layer rows lack column k")
            continue
        rows = rows.dropna(subset=["k"])
        for model in model_order(rows):
            mine = select(rows, model=model)
            n_layers = depth(select(data.results, model=model, task=task))
            subtasks = sorted(set(mine["subtask"]), key=subtask_sort_key)
            colours = dict(zip(subtasks, SERIES_PALETTE))
            figure = new_figure(7.5, 4.2)
            ax = figure.add_subplot()
            readings = []
            for method in ordered(mine["method"], LENSES):
                for subtask in subtasks:
                    line = select(mine, method=method, subtask=subtask).sort_values("k")
                    if line.empty:
                        continue
                    ax.plot(line["k"], line["value"], LENS_STYLE.get(method, ":"), marker="o", ms=3.5,
                            color=colours[subtask], label=subtask)
                    at_one = line[line["k"] == line["k"].min()]["value"].iloc[0]
                    readings.append(f"{subtask} ({method}) reaches rank <= {int(line['k'].min())} at layer "
                                    f"{at_one:.1f} and rank <= {int(line['k'].max())} at layer {line['value'].iloc[-1]:.1f}")
            ax.set_xscale("log")
            ax.set_xlabel("k (answer within the top k tokens, log scale)")
            layer_axis(ax, n_layers, axis="y")
            ax.set_ylabel("mean earliest layer (0 = embeddings)")
            handles = [Line2D([], [], color=colours[s], marker="o", ms=3.5, label=s) for s in subtasks]
            handles += [Line2D([], [], color="black", ls=LENS_STYLE.get(m, ":"), label=m)
                        for m in ordered(mine["method"], LENSES)]
            legend_below(figure, handles, [h.get_label() for h in handles], what)
            title = f"{model}: earliest layer where the final token is in the top k, by {what}"
            figure.suptitle(title.replace(", by", "\nby"))
            outcomes.append(canvas.save(figure, f"s2_earliest_{task}_{safe_name(model)}", STUDY2, title,
                                        f"Out of {n_layers} layers: " + "; ".join(readings) + "."))
    return outcomes


def subtask_sort_key(subtask: str) -> tuple:
    """Sort 'len10/pos2' numerically (len2 before len10) and POS tags alphabetically."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", subtask))


def study2_options(data: Data, canvas: Canvas) -> list[Outcome]:
    rows = select(data.results, task="options")
    if rows.empty:
        return missing("s2_options", STUDY2, "no task 'options' rows")
    outcomes: list[Outcome] = []
    for model in model_order(rows):
        mine = select(rows, model=model)
        n_layers = depth(mine)
        subtasks = sorted(set(mine["subtask"]))
        colours = dict(zip(subtasks, SERIES_PALETTE))
        figure = new_figure(10, 3.9)
        rank_ax, top_ax = figure.subplots(1, 2)
        readings = []
        for method in ordered(mine["method"], LENSES):
            style = LENS_STYLE.get(method, ":")
            for subtask in subtasks:
                part = select(mine, method=method, subtask=subtask)
                ranks = select(part, metric="correct_option_rank").query("layer >= 0").sort_values("layer")
                tops = select(part, metric="correct_top_option").query("layer >= 0").sort_values("layer")
                rank_ax.plot(ranks["layer"], ranks["value"], style, color=colours[subtask])
                top_ax.plot(tops["layer"], tops["value"], style, color=colours[subtask])
                text = f"{subtask} ({method})"
                for metric, marker in (("enter_layer", "^"), ("settle_layer", "o")):
                    summary = select(part, metric=metric, layer=-1)
                    if summary.empty or tops.empty:
                        continue
                    layer = float(summary["value"].iloc[0])
                    top_ax.plot(layer, np.interp(layer, tops["layer"], tops["value"]), marker, color=colours[subtask],
                                ms=7, mec="black", mew=0.6)
                    text += f" {metric.split('_')[0]}s at layer {layer:.1f}"
                if not tops.empty:
                    text += f", correct option on top at the last layer {pct(tops['value'].iloc[-1])}"
                readings.append(text)
        rank_ax.invert_yaxis()
        rank_ax.set_ylabel("mean rank of the correct option (1 = top)")
        rank_ax.set_title("rank among the options")
        share_axis(top_ax, "share with the correct option on top")
        top_ax.set_title("correct option ranked first")
        for ax in (rank_ax, top_ax):
            layer_axis(ax, n_layers)
        handles = [Line2D([], [], color=colours[s], label=s) for s in subtasks]
        handles += [Line2D([], [], color="black", ls=LENS_STYLE.get(m, ":"), label=m) for m in ordered(mine["method"], LENSES)]
        handles += [Line2D([], [], ls="", marker=m, color="white", mec="black", label=label)
                    for m, label in (("^", "enters (first on top)"), ("o", "settles (stays on top)"))]
        legend_below(figure, handles, [h.get_label() for h in handles], "option task")
        title = f"{model}: where the correct option rises to the top, per layer"
        figure.suptitle(title)
        outcomes.append(canvas.save(figure, f"s2_options_{safe_name(model)}", STUDY2, title, "; ".join(readings) + "."))
    return outcomes


def study2_frequency(data: Data, canvas: Canvas) -> list[Outcome]:
    rows = select(data.results, task="frequency", metric="top1_share")
    rows = rows[rows["layer"] >= 0]
    if rows.empty:
        return missing("s2_frequency", STUDY2, "no task 'frequency' rows with metric top1_share")
    outcomes: list[Outcome] = []
    for model in model_order(rows):
        mine = select(rows, model=model)
        n_layers = depth(mine)
        methods = ordered(mine["method"], LENSES)
        buckets = ordered(mine["subtask"], FREQUENCY_BUCKETS)
        colours = dict(zip(buckets, matplotlib.colormaps["YlOrRd_r"](np.linspace(0.05, 0.8, len(buckets)))))
        figure = new_figure(min(14.0, max(7.0, 0.22 * (n_layers + 1) + 2.5)), 2.9 * len(methods) + 0.6)
        axes = figure.subplots(len(methods), 1, squeeze=False, sharex=True)[:, 0]
        readings = []
        for ax, method in zip(axes, methods):
            table = select(mine, method=method).pivot_table(index="layer", columns="subtask", values="value")
            table = table.reindex(columns=buckets).fillna(0)
            bottom = np.zeros(len(table))
            for bucket in buckets:
                ax.bar(table.index, table[bucket], 0.85, bottom=bottom, color=colours[bucket], label=bucket,
                       edgecolor="white", lw=0.3)
                bottom += table[bucket].to_numpy()
            share_axis(ax, "share of top-1 tokens")
            layer_axis(ax, n_layers)
            ax.grid(axis="x", visible=False)
            ax.set_title(method)
            first, last = table.index.min(), table.index.max()
            top = buckets[0]
            readings.append(f"{method}: {top} tokens are {pct(table.loc[first, top])} of top-1 predictions at layer "
                            f"{first} and {pct(table.loc[last, top])} at layer {last}")
        legend_below(figure, *axes[0].get_legend_handles_labels(), "frequency bucket")
        title = f"{model}: frequency bucket of the top-1 token per layer"
        figure.suptitle(title)
        outcomes.append(canvas.save(figure, f"s2_frequency_{safe_name(model)}", STUDY2, title, "; ".join(readings) + "."))
    return outcomes


def study2_flips(data: Data, canvas: Canvas) -> list[Outcome]:
    rows = select(data.results, task="flips", metric="flip_rate")
    rows = rows[rows["layer"] >= 0]
    if rows.empty:
        return missing("s2_flips", STUDY2, "no task 'flips' rows with metric flip_rate")
    outcomes: list[Outcome] = []
    for model in model_order(rows):
        mine = select(rows, model=model)
        n_layers = depth(mine)
        buckets = [b for b in ordered(mine["subtask"], FREQUENCY_BUCKETS) if b != "all"]
        colours = dict(zip(buckets, SERIES_PALETTE)) | {"all": "black"}
        figure = new_figure(8, 4)
        ax = figure.add_subplot()
        readings = []
        for method in ordered(mine["method"], LENSES):
            for bucket in buckets + (["all"] if "all" in set(mine["subtask"]) else []):
                line = select(mine, method=method, subtask=bucket).sort_values("layer")
                if line.empty:
                    continue
                ax.plot(line["layer"], line["value"], LENS_STYLE.get(method, ":"), color=colours[bucket],
                        lw=2.4 if bucket == "all" else 1.4)
                halfway = line[line["value"] < 0.5]
                readings.append(f"{bucket} ({method}): {pct(line['value'].iloc[0])} at layer {int(line['layer'].iloc[0])}, "
                                + (f"below 50% from layer {int(halfway['layer'].iloc[0])}" if len(halfway) else "never below 50%"))
        share_axis(ax, "flip rate (top-1 differs from the final top-1)")
        layer_axis(ax, n_layers)
        handles = [Line2D([], [], color=colours[b], lw=2.4 if b == "all" else 1.4, label=b)
                   for b in buckets + (["all"] if "all" in set(mine["subtask"]) else [])]
        handles += [Line2D([], [], color="grey", ls=LENS_STYLE.get(m, ":"), label=m) for m in ordered(mine["method"], LENSES)]
        legend_below(figure, handles, [h.get_label() for h in handles], "final top-1 bucket")
        title = f"{model}: decision flip rate per layer by frequency bucket"
        figure.suptitle(title)
        outcomes.append(canvas.save(figure, f"s2_flips_{safe_name(model)}", STUDY2, title, "; ".join(readings) + "."))
    return outcomes


# ---------------------------------------------------------------- synthetic studies

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
    models = colour_order(rows)
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


BUILDERS: list[Callable[[Data, Canvas], list[Outcome]]] = [
    study1_heatmaps, study1_curves, study1_sizes, study1_radar, study1_xmps, study1_lens_vs_probe,
    study2_earliest, study2_options, study2_frequency, study2_flips,
    synthetic_probes, synthetic_training, synthetic_qa, synthetic_capacity,
]
SECTIONS = [STUDY1, STUDY2, SYNTHETIC]


def draw_all(data: Data, canvas: Canvas, progress: Callable[[Iterable], Iterable] = iter) -> list[Outcome]:
    """Every figure the data allows, in report order, with one consistent colour per model."""
    canvas.colours = {model: MODEL_PALETTE[i % len(MODEL_PALETTE)] for i, model in enumerate(colour_order(data.results))}
    outcomes: list[Outcome] = []
    with matplotlib.rc_context(STYLE):
        for builder in progress(BUILDERS):
            outcomes += builder(data, canvas)
    return outcomes
