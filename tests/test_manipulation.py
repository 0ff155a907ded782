"""Part 3.2 knowledge manipulation: question formats, labels, answer parsing, scoring, separate runs."""

from datetime import datetime

import numpy as np
import pytest

from layerprobe.errors import LayerprobeError
from layerprobe.synthetic import bios, evaluate
from layerprobe.synthetic.data import FINETUNES, finetune_tasks, qa_docs
from layerprobe.synthetic.evaluate import manipulation_answers, score_answer
from layerprobe.synthetic.runs import RunConfig, train_run, validate

ADA = bios.Person("Ada", "Moss", "Barlow", True, 3, 14, 1957, "Ashford", "Caldwell College", "Law", "Bluecrest Bank")
NILS = bios.Person("Nils", "Oak", "Upton", False, 9, 2, 1960, "Riverton", "Upland University", "Music", "Lumen Energy")


@pytest.fixture(scope="module")
def population():
    return bios.make_population(200, seed=1)


def test_cot_and_direct_formats_by_hand():
    assert bios.qa(ADA, "year_parity") == ("Was Ada Moss Barlow born in an even year?", "no")
    assert bios.qa(ADA, "year_parity_cot") == ("Was Ada Moss Barlow born in an even year? Name the year first.", "1957 ; so no")
    assert bios.qa(NILS, "month_half") == ("Was Nils Oak Upton born after June?", "yes")
    assert bios.qa(NILS, "month_half_cot")[1] == "September ; so yes"
    assert bios.qa(ADA, "compare", NILS) == ("Was Ada Moss Barlow born in an earlier year than Nils Oak Upton?", "yes")
    assert bios.qa(NILS, "compare_cot", ADA)[1] == "1960 ; 1957 ; so no"
    assert bios.qa(ADA, "inverse_cot")[1] == "March 14, 1957 ; Ashford ; so Ada Moss Barlow"
    assert bios.qa(ADA, "birth_day") == ("On which day of the month was Ada Moss Barlow born?", "14")
    assert bios.qa(ADA, "dual/birth_city+employer") == ("What are the birth city and the employer of Ada Moss Barlow?",
                                                      "Ashford ; Bluecrest Bank")
    assert bios.qa(ADA, "dual/employer+birth_city")[1] == "Bluecrest Bank ; Ashford"
    with pytest.raises(LayerprobeError, match="partner"):
        bios.qa(ADA, "compare", ADA)


def test_dual_parser_and_scoring_of_hand_made_answers():
    truth = bios.words("Bluecrest Bank ; Ashford")
    assert bios.answer_parts(truth) == [["Bluecrest", "Bank"], ["Ashford"]]
    assert score_answer(bios.words("Bluecrest Bank ; Ashford"), truth) == (True, [True, True])
    assert score_answer(bios.words("Bluecrest Bank ; Riverton"), truth) == (False, [True, False])
    assert score_answer(bios.words("Bluecrest Bank"), truth) == (False, [True, False])
    assert score_answer(bios.words("Bluecrest Bank ; Ashford ; Law"), truth) == (False, [True, True])
    cot = bios.words("March 14 , 1957 ; Ashford ; so Ada Moss Barlow")
    assert bios.final_answer(cot) == ["Ada", "Moss", "Barlow"]
    # a CoT answer counts its verdict: wrong steps with the right verdict still score, a wrong verdict does not
    assert score_answer(bios.words("1961 ; so no"), bios.words("1957 ; so no")) == (True, [False, True])
    assert score_answer(bios.words("1957 ; so yes"), bios.words("1957 ; so no")) == (False, [True, False])
    assert score_answer(["no"], ["no"]) == (True, [True])


def test_labels_match_an_independent_reading_of_the_birth_date(population):
    pool = population.qa_test
    for i in pool:
        person = population.people[i]
        born = datetime.strptime(person.birth_date, "%B %d, %Y")
        assert bios.qa(person, "year_parity")[1] == ("yes" if born.year % 2 == 0 else "no")
        assert bios.qa(person, "month_half")[1] == ("yes" if born.month in (7, 8, 9, 10, 11, 12) else "no")
        assert bios.qa(person, "birth_day")[1] == str(born.day)
        j = bios.comparison_partner(population, i, pool)
        other = datetime.strptime(population.people[j].birth_date, "%B %d, %Y")
        assert j in pool and j != i and other.year != born.year
        assert bios.qa(person, "compare", population.people[j])[1] == ("yes" if born.year < other.year else "no")
    verdicts = [bios.qa(population.people[i], "year_parity")[1] for i in pool]
    assert 0.3 < verdicts.count("yes") / len(verdicts) < 0.7  # both classes occur


def test_scoring_reads_the_generated_answers_person_by_person(population, monkeypatch):
    """With the decoder replaced by one that answers some people right and others wrong, the
    scores must name exactly those people (prompts and truths stay aligned)."""
    vocab = bios.build_vocab()
    people = population.qa_test[:12]
    right = {0, 3, 4, 9}

    def fake_sample(lm, prompts, max_new, seed, temperature, desc):
        assert temperature == 0
        outputs = []
        for k, (i, prompt) in enumerate(zip(people, prompts)):
            partner = population.people[bios.comparison_partner(population, i, people)]
            question, answer = bios.qa_tokens(population.people[i], "compare_cot", partner)
            assert vocab.decode(prompt) == question
            wrong = "yes" if answer[-1] == "no" else "no"
            outputs.append((vocab.encode(answer if k in right else answer[:-1] + [wrong]), True))
        return outputs

    monkeypatch.setattr(evaluate, "sample", fake_sample)
    lm = type("LM", (), {"tokenizer": vocab})()
    answers = manipulation_answers(lm, population, people, "compare_cot")
    assert np.flatnonzero(answers.correct).tolist() == sorted(right)
    assert answers.exact.tolist() == answers.correct.tolist()
    assert answers.parts.shape == (12, 3) and answers.parts[:, :2].all()
    finals = [bios.qa(population.people[i], "compare", population.people[bios.comparison_partner(population, i, people)])[1]
              for i in people]
    assert answers.majority == max(finals.count("yes"), finals.count("no")) / 12


def test_every_condition_encodes_and_runs_share_one_pretraining(tmp_path, population):
    vocab = bios.build_vocab()
    for finetune in FINETUNES:
        assert qa_docs(vocab, population, population.qa_train, True, tasks=finetune_tasks(finetune))
    small = dict(world="bios", mode="pretrain-finetune", layers=1, width=16, heads=2, steps=3, batch=4, people=20,
                 finetune_steps=2)
    for finetune in ("partial", "classify-cot"):
        config = RunConfig(**small, finetune=finetune)
        train_run(config, tmp_path / config.name(), tmp_path / "data", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bios-pretrain-finetune-noaug-llama-classify-cot", "bios-pretrain-finetune-noaug-llama-partial", "data",
        "pretrain-bios-pretrain-finetune-noaug-llama"]
    assert (tmp_path / "data" / "train_pretrain-bios-pretrain-finetune-noaug-llama.csv").exists()
    other = RunConfig(**dict(small, steps=4), finetune="dual")
    with pytest.raises(LayerprobeError, match="other settings"):
        train_run(other, tmp_path / other.name(), tmp_path / "data", progress=False)
    with pytest.raises(LayerprobeError, match="need --world bios --mode pretrain-finetune"):
        validate(RunConfig(world="bios", mode="mixed", finetune="dual"))


def test_manipulation_figure_reads_the_held_out_accuracies(tmp_path):
    import pandas as pd

    from layerprobe.plots.common import Canvas, Data
    from layerprobe.plots.physics import synthetic_manipulation

    def row(condition, question, split, metric, value):
        return dict(model=f"run-{condition}", task="bios-manipulation", subtask=f"pretrain-finetune/aug/{condition}",
                    language=split, method="greedy", layer=-1, n_layers=2, metric=metric, value=value, n_items=40,
                    ci_low=max(0.0, value - 0.1), ci_high=min(1.0, value + 0.1), attribute=question)
    rows = [row("compare-cot", "compare", "train", "accuracy", 0.9), row("compare-cot", "compare", "test", "accuracy", 0.55),
            row("compare-cot", "compare_cot", "test", "accuracy", 0.75), row("compare-cot", "compare", "test", "majority", 0.5),
            row("partial", "birth_year", "test", "accuracy", 0.25)]
    data = Data(results=pd.DataFrame(rows), training=pd.DataFrame(), files=[])
    [drawn] = synthetic_manipulation(data, Canvas(tmp_path, dpi=40, formats=("png",)))
    assert "compare-cot held-out: compare 55.0%, compare_cot 75.0%" in drawn.reading
    assert "partial held-out: birth_year 25.0%" in drawn.reading
    assert (tmp_path / "syn_manipulation.png").stat().st_size > 1000


def test_lora_fine_tuning_trains_adapters_only_and_saves_a_plain_model(tmp_path):
    import torch

    from layerprobe.synthetic.runs import load_run

    small = dict(world="bios", mode="pretrain-finetune", layers=1, width=16, heads=2, steps=3, batch=4, people=20,
                 finetune_steps=3)
    config = RunConfig(**small, lora=4)
    assert config.name() == "bios-pretrain-finetune-noaug-llama-lora4"
    lm = train_run(config, tmp_path / config.name(), tmp_path / "data", progress=False)
    checkpoint = tmp_path / "pretrain-bios-pretrain-finetune-noaug-llama" / "checkpoint.pt"
    pretrained = torch.load(checkpoint, weights_only=False)["model"]
    tuned = lm.model.state_dict()
    assert set(tuned) == set(pretrained)  # merged: no adapter weights left
    changed = {name for name in tuned if not torch.equal(tuned[name], pretrained[name])}
    assert changed and all(("q_proj" in n or "v_proj" in n or "embed_tokens" in n) for n in changed)
    _, reloaded = load_run(tmp_path / config.name())
    assert all(torch.equal(reloaded.model.state_dict()[n], tuned[n]) for n in tuned)
