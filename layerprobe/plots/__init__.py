"""Figures from the results CSVs only (never a model), each with a one-paragraph reading of its numbers.

Every figure builder takes the loaded `Data` and a `Canvas` and returns what it drew (`Drawn`, with
the reading the report prints under the figure) or why it drew nothing (`Skipped`). A run over
partial data therefore draws what it can and lists the rest instead of failing.

`common` holds what all figures share; each study has its own module of builders (`study1`,
`study2`, `physics`). A new figure is a builder function in its study's module plus one entry in
`REGISTRY` below, under the report section it belongs to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import matplotlib
import pandas as pd

from layerprobe.plots.common import MODEL_PALETTE, STYLE, Builder, Canvas, Data, Outcome, model_order
from layerprobe.plots.physics import (
    QA_TASKS, SYNTHETIC, SYNTHETIC_PROBE_TASKS, SYNTHETIC_TASKS, synthetic_bios_probes, synthetic_canon,
    synthetic_capacity, synthetic_capacity_junk, synthetic_cfg_attention, synthetic_cfg_curve, synthetic_cfg_diversity,
    synthetic_igsm_curve, synthetic_igsm_decode, synthetic_igsm_detour, synthetic_igsm_finetune, synthetic_igsm_retry,
    synthetic_manipulation, synthetic_probes, synthetic_qa, synthetic_training,
)
from layerprobe.plots.study1 import (
    STUDY1, study1_curves, study1_heatmaps, study1_lens_vs_probe, study1_radar, study1_sizes, study1_xmps,
)
from layerprobe.plots.study2 import (
    STUDY2, study2_earliest, study2_flips, study2_frequency, study2_lens_kl, study2_options, study2_shortlist,
)

REGISTRY: dict[str, list[Builder]] = {
    STUDY1: [study1_heatmaps, study1_curves, study1_sizes, study1_radar, study1_xmps, study1_lens_vs_probe],
    STUDY2: [study2_lens_kl, study2_earliest, study2_options, study2_shortlist, study2_frequency, study2_flips],
    SYNTHETIC: [synthetic_probes, synthetic_training, synthetic_igsm_curve, synthetic_igsm_retry, synthetic_igsm_decode,
                synthetic_igsm_detour, synthetic_igsm_finetune, synthetic_qa, synthetic_bios_probes, synthetic_manipulation,
                synthetic_cfg_attention, synthetic_cfg_diversity, synthetic_cfg_curve, synthetic_capacity,
                synthetic_capacity_junk, synthetic_canon],
}
"""Report sections in order, each with its figure builders in order."""
SECTIONS = list(REGISTRY)
BUILDERS = [builder for builders in REGISTRY.values() for builder in builders]


def colour_order(results: pd.DataFrame) -> list[str]:
    """Models in the order they get colours: the pretrained ones of studies 1 and 2 first, so the
    usual handful keeps the first palette colours, then the synthetic ones (capacity runs, coloured
    by exposures instead, take none)."""
    pretrained = model_order(results[~results["task"].isin(SYNTHETIC_TASKS)])
    synthetic = model_order(results[results["task"].isin(SYNTHETIC_PROBE_TASKS + QA_TASKS)])
    return pretrained + [m for m in synthetic if m not in pretrained]


def draw_all(data: Data, canvas: Canvas, progress: Callable[[Iterable], Iterable] = iter) -> list[Outcome]:
    """Every figure the data allows, in report order, with one consistent colour per model."""
    canvas.colours = {model: MODEL_PALETTE[i % len(MODEL_PALETTE)] for i, model in enumerate(colour_order(data.results))}
    outcomes: list[Outcome] = []
    with matplotlib.rc_context(STYLE):
        for builder in progress(BUILDERS):
            outcomes += builder(data, canvas)
    return outcomes
