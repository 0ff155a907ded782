"""plot_figures.py: every figure from realistic CSVs, readings that match the numbers, skips, bad input, the report in Chromium."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import plot_figures
from layerprobe.cli import run
from layerprobe.plots import colour_order
from layerprobe.plots.common import MODEL_PALETTE, Canvas, load_data, overall
from layerprobe.plots.physics import bios_probe_table, synthetic_bios_probes, synthetic_training
from layerprobe.results import atomic_write_csv, layer_rows
from plot_data import JUNK_CONDITIONS, training_frame, write_all

DEPTHS = {"smollm2-135m": 8, "gemma3-270m": 4}
FULL, SECOND = DEPTHS
EXPECTED = (
    [f"s1_heatmap_{m}" for m in DEPTHS] + [f"s1_radar_{m}" for m in DEPTHS] + [f"s1_xmps_{m}" for m in DEPTHS]
    + [f"s1_lens_probe_{m}" for m in DEPTHS] + ["s1_sizes"]
    + [f"s1_curves_{t}" for t in ("calculation", "mps-cal", "mps-rea", "xmps-cal", "xmps-rea", "factual", "truthfulqa",
                                  "truthfulqa_mc2", "truthfulqa_mc3", "logical")]
    + [f"s2_{f}_{FULL}" for f in ("lens_kl", "earliest_pos", "earliest_facts", "options", "shortlist", "frequency", "flips")]
    + [f"syn_probes_{t}_{t}-gpt-4l" for t in ("cfg", "bios", "igsm")] + ["syn_probes_bios_bios-noaug-gpt-4l", "syn_bios_probes"]
    + ["syn_training_bios", "syn_igsm_curve", "syn_igsm_retry", "syn_igsm_decode", "syn_igsm_detour", "syn_igsm_finetune", "syn_qa",
       "syn_manipulation", "syn_cfg_attention_cfg-gpt-4l", "syn_cfg_diversity", "syn_cfg_curve", "syn_capacity",
       "syn_capacity_junk", "syn_canon"]
)


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    return struct.unpack(">II", header[16:24])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One full run over CSVs of every task family (low dpi, PNG only, to keep the test fast)."""
    root = tmp_path_factory.mktemp("plots")
    write_all(root / "data", DEPTHS)
    plot_figures.main(["--data", str(root / "data"), "--out", str(root / "figures"), "--dpi", "50", "--formats", "png"])
    return root


def report_text(root: Path) -> str:
    return (root / "report.html").read_text(encoding="utf-8")


def test_every_figure_is_drawn_as_a_non_empty_png(rendered: Path) -> None:
    drawn = sorted(p.stem for p in (rendered / "figures").glob("*.png"))
    assert drawn == sorted(EXPECTED)
    for name in EXPECTED:
        width, height = png_size(rendered / "figures" / f"{name}.png")
        assert width > 100 and height > 100, name


def test_readings_quote_the_best_layer_from_the_csv(rendered: Path) -> None:
    rows = pd.read_csv(rendered / "data" / f"study1_{FULL}.csv", keep_default_na=False)
    curve = rows[(rows.task == "mps-cal") & (rows.method == "lens-norm") & (rows.metric == "accuracy")].sort_values("layer")
    best = int(curve.value.to_numpy().argmax())  # earliest maximum, as np.argmax
    row = curve.iloc[best]
    expected = (f"{FULL} (lens-norm): best layer {best} of {DEPTHS[FULL]}, {row.value:.1%} "
                f"(95% CI {row.ci_low:.1%}-{row.ci_high:.1%}), layer {DEPTHS[FULL]} {curve.value.iloc[-1]:.1%}")
    assert expected in report_text(rendered)


def test_lens_kl_reading_quotes_the_mean_per_layer_ratio_from_the_csv(rendered: Path) -> None:
    rows = pd.read_csv(rendered / "data" / f"trace_{FULL}.csv", keep_default_na=False)
    kl = rows[(rows.task == "lens") & (rows.metric == "kl") & (rows.layer < DEPTHS[FULL])]
    by_method = {method: part.sort_values("layer").value.to_numpy() for method, part in kl.groupby("method")}
    ratio = by_method["tuned-lens"] / by_method["logit-lens"]
    assert len(ratio) == DEPTHS[FULL]
    expected = (f"KL(tuned) / KL(logit) is {ratio.mean():.2f} on average over layers 0-{DEPTHS[FULL] - 1} "
                f"(ratio per layer, from {ratio.min():.2f} to {ratio.max():.2f}), below it at {DEPTHS[FULL]} of {DEPTHS[FULL]}")
    assert expected in report_text(rendered)


def test_shortlist_reading_quotes_the_first_layer_with_half_the_letters_in_the_top_k(rendered: Path) -> None:
    rows = pd.read_csv(rendered / "data" / f"trace_{FULL}.csv", keep_default_na=False)
    mmlu = rows[(rows.task == "options") & (rows.subtask == "mmlu") & (rows.method == "logit-lens")]
    expected = []
    for k in (4, 10, 100):
        curve = mmlu[(mmlu.metric == "options_in_topk") & (pd.to_numeric(mmlu.k, errors="coerce") == k)].sort_values("layer")
        first = int(curve[curve.value >= 0.5].layer.iloc[0])  # independent of the figure code
        expected.append(f"all letters in the top {k} for half the questions from layer {first} "
                        f"({curve.value.iloc[-1]:.1%} at layer {DEPTHS[FULL]})")
    accuracy = mmlu[mmlu.metric == "correct_top_option"].sort_values("layer")
    expected.append(f"accuracy among the letters {accuracy.value.iloc[-1]:.1%} at layer {DEPTHS[FULL]}")
    assert "logit-lens: " + ", ".join(expected) in report_text(rendered)


def test_igsm_curve_reading_quotes_the_last_premature_share_from_the_csv(rendered: Path) -> None:
    rows = pd.read_csv(rendered / "data" / "synthetic.csv", keep_default_na=False)
    early = rows[(rows.task == "igsm-curve") & (rows.metric == "premature_share") & rows.subtask.str.endswith("/all")]
    last = early.sort_values("step").iloc[-1]
    assert f"{last.model} lost to a premature step: {last.value:.1%} of problems" in report_text(rendered)


def test_igsm_detour_reading_quotes_the_three_accuracies_from_the_csv(rendered: Path) -> None:
    rows = pd.read_csv(rendered / "data" / "synthetic.csv", keep_default_na=False)
    cells = rows[(rows.task == "igsm-accuracy") & (rows.subtask == "retry=0/all") & (rows.language == "test")]
    value = cells.set_index("metric")["value"].astype(float)
    assert value["accuracy_after_detour"] < 0.5 < value["accuracy_after_steps"]
    assert (f"igsm-gpt-4l test templates, all operations: from the start {value['accuracy']:.1%}, after its own "
            f"steps but the last {value['accuracy_after_steps']:.1%}, after one unneeded step more "
            f"{value['accuracy_after_detour']:.1%}") in report_text(rendered)


def test_capacity_junk_reading_quotes_the_seed_mean_and_t_interval(rendered: Path) -> None:
    rows = pd.read_csv(rendered / "data" / "synthetic.csv", keep_default_na=False)
    fp32 = rows[(rows.task == "capacity") & (rows.method == "fp32") & (rows.condition != "")]
    parts = []
    for _, _, condition, _ in JUNK_CONDITIONS:
        values = fp32[fp32.condition == condition].value.to_numpy(dtype=float)
        half = 4.303 * values.std(ddof=1) / np.sqrt(3)  # t(0.975, 2 degrees of freedom)
        parts.append(f"{condition} {values.mean():.2f} [{values.mean() - half:.2f}, {values.mean() + half:.2f}] (3 seeds)")
    assert parts[1] == "junk 7/8 0.31 [0.29, 0.33] (3 seeds)"
    assert "1 x 8, 256 people, 300 useful exposures: " + ", ".join(parts) in report_text(rendered)
    # junk runs stay off the size sweep's figure: its 300-exposure top is the plain run's, not junk + domain's 1.27
    assert "300 exposures, fp32: up to 1.22 bits/param (at 3,000 parameters)" in report_text(rendered)


def test_size_comparison_reads_the_mean_over_tasks_at_the_last_layer(rendered: Path) -> None:
    rows = pd.read_csv(rendered / "data" / f"study1_{SECOND}.csv", keep_default_na=False)
    last = rows[(rows.layer == DEPTHS[SECOND]) & (rows.method == "lens-norm")]
    headline = last[(last.metric == np.where(last.task == "truthfulqa", "mc1", "accuracy"))]
    per_task = []
    for task, part in headline.groupby("task"):
        if (part.subtask == "all").any():
            part = part[part.subtask == "all"]
        per_task.append((part.value * part.n_items).sum() / part.n_items.sum())  # pooled over languages
    assert len(per_task) == 8
    assert f"{SECOND}: mean over 8 tasks {np.mean(per_task):.1%} at the last layer" in report_text(rendered)


def test_igsm_finetune_reading_quotes_each_method_from_step_0_to_the_last_step(rendered: Path) -> None:
    rows = pd.read_csv(rendered / "data" / "synthetic.csv", keep_default_na=False)
    lora = rows[(rows.task == "igsm-finetune") & (rows.finetune == "lora8") & (rows.language == "test")
                & (rows.metric == "accuracy")]
    lora = lora.assign(step=lora.step.astype(float), value=lora.value.astype(float)).sort_values("step")
    assert list(lora.step) == [0, 100, 200]
    expected = (f"lora8 p=0.2 (40,000 trainable) accuracy test: {lora.value.iloc[0]:.1%} at step 0, "
                f"{lora.value.iloc[-1]:.1%} at step 200")
    assert expected in report_text(rendered)


def test_overall_pools_languages_by_item_count_and_prefers_subtask_all() -> None:
    rows = pd.DataFrame(
        layer_rows(np.array([[1, 1, 0, 0], [1, 1, 1, 0]]), metric="accuracy", model="m", task="xmps-cal",
                   method="lens-norm", language="en")
        + layer_rows(np.array([[1, 0], [0, 0]]), metric="accuracy", model="m", task="xmps-cal",
                     method="lens-norm", language="th"))
    pooled = overall(rows)
    assert pooled["value"].tolist() == pytest.approx([3 / 6, 3 / 6])
    assert pooled["ci_low"].isna().all()  # unknown for a pooled mean
    rows = pd.concat([rows.assign(subtask="add/1-2/int"), rows.iloc[:2].assign(subtask="all", value=[0.9, 0.1])])
    assert overall(rows)["value"].tolist() == pytest.approx([0.9, 0.1])


def test_report_has_contents_readings_settings_and_csv_list(rendered: Path) -> None:
    text = report_text(rendered)
    assert text.count("<img ") == len(EXPECTED)
    for name in EXPECTED:
        assert f"src='figures/{name}.png'" in text
        assert f"href='#{name}'" in text  # table of contents
    assert "Nothing is missing" in text
    for needle in ("matplotlib", "pandas", f"study1_{FULL}.csv", "train_bios-mixed-aug.csv", "PNG dpi", "--dpi 50"):
        assert needle in text
    assert re.search(r"best layer \d+ of 8, \d+\.\d%", text)


def test_no_data_draws_nothing_and_says_why(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plot_figures.main(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "figures")])
    out = capsys.readouterr().out
    assert "no CSV files in" in out
    assert "skipped s1_curves: no rows with task in calculation" in out
    assert "skipped syn_training: no train_*.csv files" in out
    assert "drew 0 figures" in out
    assert not list(tmp_path.glob("figures/*"))
    text = (tmp_path / "report.html").read_text()
    assert "no train_*.csv files" in text and "No CSV files were found" in text


def test_partial_data_draws_what_it_can(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    rows = layer_rows(np.ones((9, 5)), metric="accuracy", model="m", task="logical", method="lens-norm", language="en")
    partial = pd.DataFrame(rows[:4])  # an interrupted run: layers 0-3 of 8 so far
    partial["ci_low"] = np.nan
    atomic_write_csv(data / "logical_m.csv", partial)
    capacity = dict(rows[0], task="capacity", layer=-1, metric="bits_per_param", value=1.5)
    atomic_write_csv(data / "capacity.csv", pd.DataFrame([capacity]))  # no n_params column
    atomic_write_csv(data / "train_run.csv", training_frame("run").drop(columns=["tokens", "lr"]))
    plot_figures.main(["--data", str(data), "--out", str(tmp_path / "figures"), "--dpi", "50", "--formats", "png"])
    out = capsys.readouterr().out
    assert sorted(p.stem for p in tmp_path.glob("figures/*.png")) == [
        "s1_curves_logical", "s1_heatmap_m", "s1_sizes", "syn_training_run"]
    assert "skipped syn_capacity: capacity rows lack the extra column n_params" in out
    assert "skipped s1_radar: no calculation rows with subtask '<op>/<digits>/<type>'" in out
    assert "skipped s2_flips: no task 'flips' rows with metric flip_rate" in out
    text = (tmp_path / "report.html").read_text()
    assert "m (lens-norm): best layer 0 of 8, 100.0%, layer 3 100.0%" in text
    assert "m: no task has reached layer 8 yet, 100.0% at each task&#x27;s best layer" in text


def test_wrong_schema_is_a_one_line_error_naming_file_and_column(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    rows = pd.DataFrame(layer_rows(np.ones((3, 2)), metric="accuracy", model="m", task="logical", method="lens-norm"))
    atomic_write_csv(data / "bad.csv", rows.drop(columns=["ci_high"]))
    with pytest.raises(SystemExit) as exit_info:
        run(plot_figures.main, ["--data", str(data), "--out", str(tmp_path / "figures")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.csv" in err and "ci_high" in err and err.startswith("error: ")
    assert not (tmp_path / "report.html").exists()
    rows = rows.astype({"value": object})
    rows.loc[1, "value"] = "high"
    atomic_write_csv(data / "bad.csv", rows)
    with pytest.raises(SystemExit):
        run(plot_figures.main, ["--data", str(data), "--out", str(tmp_path / "figures")])
    assert "bad.csv, line 3, field 'value': 'high' is not a number" in capsys.readouterr().err


def test_bios_probe_figure_reads_each_condition_from_its_own_model(tmp_path: Path) -> None:
    """Run "a" is augmented and "b" not, only their QA rows say so (names sort the other way); each
    probe curve peaks at a known layer. The figure's rows must put each model under its own condition."""
    curves = {("a", "q-probe"): [0.1, 0.9, 0.7], ("b", "q-probe"): [0.05, 0.2, 0.3],
              ("a", "p-probe"): [0.1, 0.95, 0.9], ("b", "p-probe"): [0.1, 0.4, 0.6]}
    rows = [dict(model=model, task="bios", subtask=f"{position}/major", language="", method=method, layer=layer,
                 n_layers=2, metric="accuracy", value=value * (1 if method == "probe-trained" else 0.5), n_items=100,
                 ci_low="", ci_high="")
            for (model, position), values in curves.items() for method in ("probe-trained", "probe-random")
            for layer, value in enumerate(values)]
    rows += [dict(model=model, task="bios-qa", subtask=condition, language="test", method="greedy", layer=-1, n_layers=2,
                  metric="accuracy", value=0.5, n_items=100, ci_low=0.4, ci_high=0.6, attribute="all")
             for model, condition in (("a", "mixed/aug"), ("b", "mixed/noaug"))]
    atomic_write_csv(tmp_path / "bios.csv", pd.DataFrame(rows))
    data = load_data(tmp_path)
    table = bios_probe_table(data.results).set_index(["condition", "init", "position"])
    assert table.loc[("mixed/aug", "trained", "q-probe"), "value"] == pytest.approx(0.9)
    assert table.loc[("mixed/aug", "trained", "q-probe"), "layer"] == 1
    assert table.loc[("mixed/noaug", "trained", "q-probe"), ["layer", "value"]].tolist() == [2, pytest.approx(0.3)]
    assert table.loc[("mixed/noaug", "random", "p-probe"), "value"] == pytest.approx(0.3)
    [drawn] = synthetic_bios_probes(data, Canvas(tmp_path / "figures", dpi=50, formats=("png",)))
    assert drawn.reading == ("mixed/noaug p-probe: major 60.0%; mixed/aug p-probe: major 95.0%; "
                             "mixed/noaug q-probe: major 30.0%; mixed/aug q-probe: major 90.0%.")
    assert drawn.files[0].exists()


def test_vector_formats_and_training_reading(tmp_path: Path) -> None:
    curve = training_frame("a")
    atomic_write_csv(tmp_path / "train_a.csv", curve)
    canvas = Canvas(tmp_path / "figures", dpi=50, formats=("png", "svg", "pdf"))
    [drawn] = synthetic_training(load_data(tmp_path), canvas)
    assert [p.name for p in drawn.files] == ["syn_training_a.png", "syn_training_a.svg", "syn_training_a.pdf"]
    assert drawn.files[1].read_text().lstrip().startswith("<?xml") and drawn.files[2].read_bytes()[:4] == b"%PDF"
    assert drawn.reading == (f"a: loss {curve.loss.iloc[0]:.3f} -> {curve.loss.iloc[-1]:.3f} "
                             f"after {curve.tokens.iloc[-1]:,} tokens.")


def test_model_colours_are_stable_and_pretrained_models_come_first(tmp_path: Path) -> None:
    write_all(tmp_path, DEPTHS)
    order = colour_order(load_data(tmp_path).results)
    assert order[:2] == [SECOND, FULL]  # shallow to deep, before the synthetic models
    assert set(order[2:]) == {"cfg-gpt-4l", "bios-gpt-4l", "bios-noaug-gpt-4l", "bios-pf-gpt-4l", "igsm-gpt-4l"}
    assert len(set(MODEL_PALETTE[: len(order)])) == len(order)


CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
TEST_INSTALL_MARKER = Path(__file__).resolve().parent.parent / ".test-install"
"""Written by `scripts/install.sh --test`: from then on the browser is part of the test set-up."""


def browser_required() -> bool:
    """CI (env CI) and any checkout where `install.sh --test` ran must run the browser test, not skip it."""
    return bool(os.environ.get("CI")) or TEST_INSTALL_MARKER.exists()


def missing_browser_parts() -> list[str]:
    missing = [] if importlib.util.find_spec("selenium") else ["selenium (pip install selenium==4.52.0)"]
    return missing + [f"{path} (apt-get install -y chromium chromium-driver)"
                      for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]


def test_report_renders_in_headless_chromium(rendered: Path) -> None:
    """The report opens in a real browser with every figure loaded and no console error (skips only locally)."""
    missing = missing_browser_parts()
    if missing:
        why = "the browser test needs " + ", ".join(missing)
        if browser_required():
            pytest.fail(why + " (required: CI is set or scripts/install.sh --test was run)")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get((rendered / "report.html").as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);")
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    assert len(images) == len(EXPECTED)
    assert [src for src, complete, width in images if not (complete and width > 0)] == []
    assert errors == []


def test_report_lists_data_sources_and_skipped_rows(tmp_path: Path) -> None:
    data = tmp_path / "data"
    read = layer_rows(np.ones((4, 38)), metric="accuracy", model="m", task="logical", method="lens-norm",
                      data="/data/reclor.parquet", skipped_rows=2)
    built_in = layer_rows(np.ones((4, 9)), metric="accuracy", model="m", task="factual", method="lens-norm",
                          data="built-in", skipped_rows=0)
    atomic_write_csv(data / "logical_m.csv", pd.DataFrame(read))
    atomic_write_csv(data / "factual_m.csv", pd.DataFrame(built_in))
    plot_figures.main(["--data", str(data), "--out", str(tmp_path / "figures"), "--dpi", "50", "--formats", "png"])
    text = (tmp_path / "report.html").read_text()
    assert ("<tr><td>logical_m.csv</td><td>m</td><td>logical</td><td>/data/reclor.parquet</td><td>2</td><td>38</td></tr>"
            in text)
    assert "<tr><td>factual_m.csv</td><td>m</td><td>factual</td><td>built-in</td><td>0</td><td>9</td></tr>" in text
