"""Claims of README.md, each checked against the code (the README text is read, so an edit there is tested too).

Other README claims are backed by the tests their docstrings name: one-line errors (`test_models.py::
test_cli_error_is_one_line_with_exit_code_2`), the killed run that ends with the same CSV
(`test_interrupted_script.py`), layer L equals the model's own log-probs (`test_models.py::
test_engine_last_layer_equals_smollm2_logprobs`), the public formats (below).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
FLAGS_PARAGRAPH = re.search(r"The scripts that load a model.*?Bad input", README, re.S).group(0)
MODEL_PART, SMALL_PART = FLAGS_PARAGRAPH.split("The scripts that train or probe small models")
STUDY1 = ["probe_math", "probe_factual", "probe_tfqa", "probe_logical", "probe_mmlu"]
MODEL_SCRIPTS = STUDY1 + ["trace_layers"]


def flags(text: str) -> set[str]:
    return set(re.findall(r"`(--[a-z-]+)", text))


def scripts(text: str) -> list[str]:
    return [name.removesuffix(".py") for name in re.findall(r"`([a-z_]+\.py)`", text)]


def help_text(script: str, capsys) -> str:
    module = importlib.import_module(script)
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def test_the_readme_names_the_shared_flags():
    assert flags(MODEL_PART.split("; the study-1")[0]) == {"--model", "--device", "--dtype", "--batch-size", "--limit",
                                                           "--seed", "--out"}
    assert "`trace_layers.py`" in MODEL_PART and "five study-1 scripts" in MODEL_PART
    assert scripts(SMALL_PART) == ["train_synthetic", "probe_synthetic", "train_igsm", "train_capacity"]


@pytest.mark.parametrize("script", MODEL_SCRIPTS)
def test_every_model_script_takes_the_flags_the_readme_lists(script, capsys):
    """README: the study-1 scripts and trace_layers.py share --model ... --out; study 1 also --head-dtype."""
    shared = flags(MODEL_PART.split("; the study-1")[0])
    extra = flags(MODEL_PART.split("; the study-1")[1]) if script in STUDY1 else set()
    assert shared | extra <= set(re.findall(r"--[a-z-]+", help_text(script, capsys)))


@pytest.mark.parametrize("script", scripts(SMALL_PART))
def test_every_small_model_script_takes_the_flags_the_readme_lists(script, capsys):
    """README: train_synthetic.py, probe_synthetic.py, train_igsm.py, train_capacity.py share --device, --seed, --out."""
    assert flags(SMALL_PART) <= set(re.findall(r"--[a-z-]+", help_text(script, capsys)))


LAYOUT = README.split("## Layout")[1].split("```")[1].splitlines()
ROOT_SCRIPTS = [name.removesuffix(".py") for line in LAYOUT if line[:1].strip() and line.split()[0].endswith(".py")
                for name in line.split() if name.endswith(".py")]


def layout_paths() -> list[Path]:
    """Every file and folder the Layout block names: a line starting with a folder lists what is inside it."""
    paths, folder = [], None
    for line in LAYOUT:
        words = line.split()
        if not words:
            continue
        if all(word.endswith("/") for word in words):  # "tests/ bench/": folders at the root
            paths += [ROOT / word for word in words]
            continue
        if words[0].endswith("/"):
            folder, words = ROOT / words[0], words[1:]
            paths.append(folder)
        elif not line.startswith(" "):
            folder = None
        depth = 0
        for word in words:  # files and folders, not the words of a "(comment)"
            depth += word.count("(")
            if depth == 0 and word.endswith((".py", ".sh", "/")):
                paths.append((folder or ROOT) / word)
            depth -= word.count(")")
    return paths


def test_every_path_of_the_layout_exists():
    """README "Layout": every script, module and folder it names is in the repository."""
    named = layout_paths()
    assert len(named) > 30 and ROOT / "layerprobe" / "engine.py" in named and ROOT / "scripts" / "install.sh" in named
    assert [str(p.relative_to(ROOT)) for p in named if not p.exists()] == []


@pytest.mark.parametrize("script", ROOT_SCRIPTS)
def test_every_script_of_the_layout_answers_help(script, capsys):
    """README "Layout": every top-level script prints its help."""
    assert "usage:" in help_text(script, capsys)


# README, last paragraph: "loaders read the public formats (TruthfulQA, LAMA TSV, ReClor, GSM8K, study-1 MPS JSONL,
# MMLU, and their Hugging Face schemas)": each format and the test that reads a file of it.
FORMAT_TESTS = {
    "TruthfulQA": ["test_tasks_truthfulness.py::test_truthfulqa_csv_best_answer_with_trailing_period",
                   "test_tasks_truthfulness.py::test_mc_task_json", "test_public_schemas.py::test_round_trip"],
    "LAMA TSV": ["test_public_schemas.py::test_round_trip"],
    "ReClor": ["test_public_schemas.py::test_round_trip"],
    "GSM8K": ["test_public_schemas.py::test_round_trip"],
    "study-1 MPS JSONL": ["test_tasks_mps.py::test_mps_jsonl_loader", "test_public_schemas.py::test_round_trip"],
    "MMLU": ["test_tasks_mmlu.py::test_offline_copy_is_the_14042_test_questions", "test_public_schemas.py::test_round_trip"],
}


def test_every_public_format_the_readme_names_is_read_by_a_test():
    """README: the loaders read TruthfulQA, LAMA TSV, ReClor, GSM8K, study-1 MPS JSONL and MMLU (and the hub schemas)."""
    claim = re.search(r"loaders read the public formats \(([^)]*)\)", " ".join(README.split())).group(1)
    named = [part.strip() for part in claim.replace(" and their Hugging Face schemas", "").split(",") if part.strip()]
    assert named == list(FORMAT_TESTS)
    from public_schemas import SCHEMAS

    assert {"cais/mmlu", "ReClor", "truthful_qa/multiple_choice", "LAMA", "GSM8K", "study-1 MPS"} <= {s.name for s in SCHEMAS}
    for tests in FORMAT_TESTS.values():
        for test in tests:
            file, name = test.split("::")
            assert re.search(rf"^def {name}\(", (ROOT / "tests" / file).read_text(encoding="utf-8"), re.M), test
