"""Study 2 (how LLMs use their depth): lens traces of the final guess: earliest layer, options, frequency, flips."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from layerprobe.plots.common import (
    SERIES_PALETTE, Canvas, Data, Outcome, depth, layer_axis, legend_below, missing, model_order, new_figure, ordered,
    pct, safe_name, select, share_axis, subtask_sort_key,
)

LENSES = ["logit-lens", "tuned-lens"]
LENS_STYLE = {"logit-lens": "-", "tuned-lens": "--"}
FREQUENCY_BUCKETS = ["top10", "11-100", "101-1000", "rest"]

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


SHORTLIST_SUBTASK = "mmlu"
SHORTLIST_PALETTE = {4: "#1b9e77", 10: "#d95f02", 100: "#7570b3"}


def _first_layer_at(curve: pd.DataFrame, share: float) -> str:
    """'layer 12', the first layer whose value reaches `share`, or 'never'."""
    reached = curve[curve["value"] >= share]
    return f"layer {int(reached['layer'].iloc[0])}" if len(reached) else "never"


def study2_shortlist(data: Data, canvas: Canvas) -> list[Outcome]:
    """MMLU's option letters in the full vocabulary (all in the top k?) next to the choice among them."""
    rows = select(data.results, task="options", subtask=SHORTLIST_SUBTASK)
    rows = rows[rows["layer"] >= 0]
    if rows.empty or select(rows, metric="options_in_topk").empty or "k" not in rows.columns:
        return missing("s2_shortlist", STUDY2, f"no task 'options' subtask '{SHORTLIST_SUBTASK}' rows with metric options_in_topk")
    outcomes: list[Outcome] = []
    for model in model_order(rows):
        mine = select(rows, model=model)
        n_layers = depth(mine)
        figure = new_figure(10, 4.1)
        share_ax, rank_ax = figure.subplots(1, 2)
        readings = []
        ks = sorted(int(k) for k in select(mine, metric="options_in_topk")["k"].dropna().unique())
        for method in ordered(mine["method"], LENSES):
            style = LENS_STYLE.get(method, ":")
            part = select(mine, method=method)
            text = []
            for k in ks:
                curve = select(part, metric="options_in_topk", k=float(k)).sort_values("layer")
                share_ax.plot(curve["layer"], curve["value"], style, color=SHORTLIST_PALETTE.get(k, "grey"))
                text.append(f"all letters in the top {k} for half the questions from {_first_layer_at(curve, 0.5)}"
                            f" ({pct(curve['value'].iloc[-1])} at layer {n_layers})")
            accuracy = select(part, metric="correct_top_option").sort_values("layer")
            rank = select(part, metric="correct_option_rank").sort_values("layer")
            share_ax.plot(accuracy["layer"], accuracy["value"], style, color="black", lw=2)
            rank_ax.plot(rank["layer"], rank["value"], style, color="black", lw=2)
            if len(accuracy):
                best = accuracy.loc[accuracy["value"].idxmax()]
                text.append(f"accuracy among the letters {pct(accuracy['value'].iloc[-1])} at layer {n_layers}, best "
                            f"{pct(best['value'])} at layer {int(best['layer'])}, with chance 25% and "
                            f"n = {int(accuracy['n_items'].iloc[-1])} questions")
            readings.append(f"{method}: " + ", ".join(text))
        share_ax.axhline(0.25, color="grey", ls=":", lw=1)
        share_axis(share_ax, "share of questions")
        share_ax.set_title("letters all in the top k of the vocabulary;\ncorrect letter first among them (black)")
        rank_ax.axhline(2.5, color="grey", ls=":", lw=1)
        rank_ax.set_ylim(max(4.0, float(select(mine, metric="correct_option_rank")["value"].max())) + 0.1, 0.9)  # 1 on top
        rank_ax.set_ylabel("mean rank of the correct letter among A-D")
        rank_ax.set_title("the choice among the letters (chance 2.5)")
        for ax in (share_ax, rank_ax):
            layer_axis(ax, n_layers)
        handles = [Line2D([], [], color=SHORTLIST_PALETTE.get(k, "grey"), label=f"all in top {k}") for k in ks]
        handles += [Line2D([], [], color="black", lw=2, label="correct letter first (accuracy)"),
                    Line2D([], [], color="grey", ls=":", label="chance")]
        handles += [Line2D([], [], color="black", ls=LENS_STYLE.get(m, ":"), label=m) for m in ordered(mine["method"], LENSES)]
        legend_below(figure, handles, [h.get_label() for h in handles], "MMLU, lettered options")
        title = f"{model}: do the option letters reach the shortlist before the choice? (MMLU)"
        figure.suptitle(title)
        outcomes.append(canvas.save(figure, f"s2_shortlist_{safe_name(model)}", STUDY2, title,
                                    "; ".join(readings) + "."))
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


def study2_lens_kl(data: Data, canvas: Canvas) -> list[Outcome]:
    """Held-out KL(final || lens) per layer of the logit lens and the trained tuned lens (how good the lens is)."""
    rows = select(data.results, task="lens", metric="kl")
    rows = rows[rows["layer"] >= 0]
    if rows.empty:
        return missing("s2_lens_kl", STUDY2, "no task 'lens' rows with metric kl (trace_layers.py --lens tuned or both)")
    outcomes: list[Outcome] = []
    for model in model_order(rows):
        mine = select(rows, model=model)
        n_layers = depth(mine)
        figure = new_figure(7.5, 4)
        ax = figure.add_subplot()
        curves = {}
        for number, method in enumerate(ordered(mine["method"], LENSES)):
            curve = select(mine, method=method).sort_values("layer")
            curve = curve[curve["layer"] < n_layers]  # both lenses are exact at the last layer (KL 0)
            curves[method] = curve.set_index("layer")["value"]
            colour = SERIES_PALETTE[number]
            ax.plot(curve["layer"], curve["value"], LENS_STYLE.get(method, ":"), marker="o", ms=3, color=colour, label=method)
            ax.fill_between(curve["layer"], curve["ci_low"], curve["ci_high"], color=colour, alpha=0.2, lw=0)
        ax.set_yscale("log")
        ax.set_ylabel("held-out KL(final || lens), nats (log scale)")
        layer_axis(ax, n_layers)
        legend_below(figure, *ax.get_legend_handles_labels(), "lens")
        title = f"{model}: how far each lens is from the model's final distribution, per layer"
        figure.suptitle(title)
        readings = [f"{method}: {curve.iloc[0]:.2f} nats at layer {curve.index[0]}, {curve.max():.2f} at its worst "
                    f"(layer {curve.idxmax()}), {curve.iloc[-1]:.2f} at layer {curve.index[-1]}"
                    for method, curve in curves.items() if len(curve)]
        if set(LENSES) <= set(curves):
            ratio = (curves["tuned-lens"] / curves["logit-lens"]).dropna()
            readings.append(f"KL(tuned) / KL(logit) is {ratio.mean():.2f} on average over layers "
                            f"0-{n_layers - 1} (ratio per layer, from {ratio.min():.2f} to {ratio.max():.2f}), "
                            f"below it at {int((ratio < 1).sum())} of {len(ratio)} layers")
        outcomes.append(canvas.save(figure, f"s2_lens_kl_{safe_name(model)}", STUDY2, title, "; ".join(readings) + "."))
    return outcomes
