"""The HTML report: every figure with its reading, the run settings and versions, and what is missing.

One page with relative links to the figure files, so it opens from disk in any browser as long as
it stays next to its figures folder (plot_figures.py writes out/report.html beside out/figures/).
"""

from __future__ import annotations

import datetime as dt
import html
import importlib.metadata
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

import layerprobe
from layerprobe.plots import SECTIONS
from layerprobe.plots.common import Data, Drawn, Outcome, Skipped
from layerprobe.results import atomic_write_text

VERSIONED_PACKAGES = ["numpy", "pandas", "matplotlib", "torch", "transformers"]

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
figure { margin: 1.5em 0 2.5em; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { margin-top: 0.5em; } .files { font-size: 0.85em; color: #666; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def anchor(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "layerprobe": layerprobe.__version__}
    for package in VERSIONED_PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def file_rows(data: Data) -> list[list[object]]:
    """Per CSV: name, modification time, rows and what it holds (models, tasks, methods)."""
    rows = []
    for csv in data.files:
        if csv.kind == "training":
            content = "runs: " + ", ".join(sorted(set(data.training.loc[data.training["source"] == csv.path.name, "run"])))
        else:
            mine = data.results[data.results["source"] == csv.path.name]
            content = "; ".join(f"{column}s: {', '.join(sorted(set(mine[column]) - {''}))}"
                                for column in ("model", "task", "method"))
        modified = dt.datetime.fromtimestamp(csv.modified).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
        rows.append([csv.path.name, modified, csv.rows, content, ", ".join(csv.extra_columns) or "-"])
    return rows


def data_source_rows(data: Data) -> list[list[object]]:
    """Per results CSV and task: where the items came from, the rows of that file skipped as unusable,
    and the items scored (the largest n_items of the task: its pooled group)."""
    results = data.results
    if "data" not in results.columns:
        return []
    known = results[results["data"].fillna("").astype(str) != ""]
    rows = []
    for (source, model, task, origin), part in known.groupby(["source", "model", "task", "data"], sort=True):
        skipped = pd.to_numeric(part.get("skipped_rows"), errors="coerce").max() if "skipped_rows" in part else float("nan")
        rows.append([source, model, task, origin, "-" if pd.isna(skipped) else int(skipped), int(part["n_items"].max())])
    return rows


def render(data: Data, outcomes: Sequence[Outcome], report_path: Path, settings: Mapping[str, object]) -> str:
    drawn = [o for o in outcomes if isinstance(o, Drawn)]
    skipped = [o for o in outcomes if isinstance(o, Skipped)]
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<link rel='icon' href='data:,'><title>layerprobe report</title>",
             f"<style>{CSS}</style></head><body>",
             "<h1>layerprobe report</h1>",
             f"<p>{len(drawn)} figures from {len(data.files)} CSV files; {len(skipped)} figures skipped. "
             f"Generated {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M:%S %Z')}.</p>"]
    toc = []
    body = []
    for section in SECTIONS:
        figures = [d for d in drawn if d.section == section]
        if not figures:
            continue
        toc.append(f"<li><a href='#{anchor(section)}'>{html.escape(section)}</a><ol>"
                   + "".join(f"<li><a href='#{d.name}'>{html.escape(d.title)}</a></li>" for d in figures)
                   + "</ol></li>")
        body.append(f"<h2 id='{anchor(section)}'>{html.escape(section)}</h2>")
        for figure in figures:
            links = [Path(os.path.relpath(path, report_path.parent)).as_posix() for path in figure.files]
            image = next((link for link in links if link.endswith(".png")), links[0])
            body.append(
                f"<figure id='{figure.name}'><h3>{html.escape(figure.title)}</h3>"
                f"<img src='{html.escape(image)}' alt='{html.escape(figure.title)}'>"
                f"<figcaption><p>{html.escape(figure.reading)}</p><p class='files'>files: "
                + ", ".join(f"<a href='{html.escape(link)}'>{html.escape(Path(link).name)}</a>" for link in links)
                + "</p></figcaption></figure>")
    toc += [f"<li><a href='#missing'>Missing figures ({len(skipped)})</a></li>",
            "<li><a href='#data'>Data read (sources, skipped rows)</a></li>",
            "<li><a href='#settings'>Run settings and versions</a></li>"]
    parts.append("<nav><h2>Contents</h2><ol>" + "".join(toc) + "</ol></nav>")
    parts += body
    parts.append("<h2 id='missing'>Missing figures</h2>")
    parts.append(table(["figure", "why it was skipped"], [[s.name, s.reason] for s in skipped])
                 if skipped else "<p>Nothing is missing: every figure had data.</p>")
    parts.append("<h2 id='data'>Data read</h2>")
    sources = data_source_rows(data)
    parts.append(table(["file", "model", "task", "data", "rows skipped", "items scored"], sources) if sources else
                 "<p>No results CSV records its data source (runs of study-1 scripts do).</p>")
    parts.append("<h2 id='settings'>Run settings and versions</h2>")
    parts.append(table(["setting", "value"], [[k, v] for k, v in settings.items()]))
    parts.append("<h3>Versions</h3>" + table(["package", "version"], list(versions().items())))
    parts.append("<h3>CSV files read</h3>" + (table(["file", "modified", "rows", "content", "extra columns"], file_rows(data))
                                            if data.files else "<p>No CSV files were found.</p>"))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(data: Data, outcomes: Sequence[Outcome], report_path: str | Path, settings: Mapping[str, object]) -> Path:
    report_path = Path(report_path)
    atomic_write_text(report_path, render(data, outcomes, report_path, settings))
    return report_path
