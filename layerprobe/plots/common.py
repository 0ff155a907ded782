"""What every study's figures share: the CSVs loaded as one table, row selection, styles and palettes,
the `Canvas` that writes figures, the `Drawn` / `Skipped` outcomes, axis, curve, heatmap and legend
helpers, and the helpers that turn numbers into readings.
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
from matplotlib.ticker import MaxNLocator, PercentFormatter

from layerprobe.errors import DataError
from layerprobe.results import COLUMNS, read_results

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


def ordered(values: Iterable[str], preferred: Sequence[str]) -> list[str]:
    """Known values in their canonical order, then the unknown ones alphabetically."""
    values = set(values)
    return [v for v in preferred if v in values] + sorted(values - set(preferred))


def subtask_sort_key(subtask: str) -> tuple:
    """Sort 'len10/pos2' numerically (len2 before len10) and POS tags alphabetically."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", subtask))


def model_order(results: pd.DataFrame) -> list[str]:
    """Models from shallow to deep (a stand-in for small to large), ties by name."""
    if results.empty:
        return []
    deepest = results.groupby("model")["n_layers"].max().fillna(0)
    return sorted(deepest.index, key=lambda m: (deepest[m], m))


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
            fmt: Callable[[float], str], fontsize: float, bold: np.ndarray | None = None,
            limits: tuple[float, float] | None = None) -> AxesImage:
    """Coloured cells with their numbers; text turns white on dark cells; `bold` marks cells to stress;
    `limits`: the colour scale's ends (default: the matrix's range), e.g. (0, 1) to compare panels."""
    finite = matrix[np.isfinite(matrix)]
    low, high = limits or ((float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0))
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


Builder = Callable[[Data, Canvas], list[Outcome]]
"""A figure builder: what it drew from the data, or why it drew nothing."""
