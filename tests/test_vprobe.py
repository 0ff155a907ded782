"""V-probe examples carry the graph's labels; the probe reads the states the engine reads; it learns."""

from __future__ import annotations

import random

import numpy as np
import torch
from single_thread import one_torch_thread  # noqa: F401  (autouse fixture)

from layerprobe.engine import hidden_states_at
from layerprobe.results import ResultsFile, read_results
from layerprobe.synthetic import igsm, igsm_lm, vprobe
from layerprobe.synthetic.train import build_model, wrap

VOCAB = igsm_lm.make_vocab()


def problems(n: int, seed: int = 0) -> list[igsm.Problem]:
    rng = random.Random(seed)
    return [igsm.sample_problem(rng) for _ in range(n)]


def name_index(problem: igsm.Problem, owner: str, item: str) -> int:
    return next(i for i, p in enumerate(problem.params) if (p.owner, p.item) == (owner, item))


def test_examples_are_balanced_and_labelled_by_the_graph():
    sample = problems(40)
    for label in vprobe.LABELS:
        made = vprobe.examples(VOCAB, sample, label, seed=1)
        assert len(made) >= 40 and sum(e.label for e in made) * 2 == len(made), label
        for example in made:
            assert VOCAB.decode(example.ids)[: len(igsm.prompt_tokens(sample[example.problem]))] \
                == igsm.prompt_tokens(sample[example.problem])
    for example in vprobe.examples(VOCAB, sample, "nece"):
        tokens, problem = VOCAB.decode(example.ids), sample[example.problem]
        assert (name_index(problem, tokens[-3], tokens[-1]) in problem.nece) == bool(example.label)
    for example in vprobe.examples(VOCAB, sample, "dep"):
        problem = sample[example.problem]
        tokens = VOCAB.decode(example.ids)
        a, b = name_index(problem, tokens[-7], tokens[-5]), name_index(problem, tokens[-3], tokens[-1])
        assert problem.dep(a, b) == bool(example.label)
    for example in vprobe.examples(VOCAB, sample, "can_next"):
        tokens, problem = VOCAB.decode(example.ids), sample[example.problem]
        written = tokens[len(igsm.prompt_tokens(problem)): tokens.index(igsm.PROBE)]
        defined = set(igsm.check_solution(problem, written).defined)
        assert problem.can_next(defined)[name_index(problem, tokens[-3], tokens[-1])] == bool(example.label)
    for example in vprobe.examples(VOCAB, sample, "error"):
        tokens, problem = VOCAB.decode(example.ids), sample[example.problem]
        written = tokens[len(igsm.prompt_tokens(problem)): -4]
        defined = set(igsm.check_solution(problem, written).defined)
        mistake = not problem.can_next(defined)[name_index(problem, tokens[-3], tokens[-1])]
        assert tokens[-4] == "define" and mistake == bool(example.label)  # ends at the name, before the letter


def test_untrained_update_reads_the_states_the_engine_reads():
    model = build_model("llama", len(VOCAB), n_layers=2, d_model=32, n_heads=4, max_len=256, seed=0)
    made = vprobe.examples(VOCAB, problems(3), "nece")
    probe = vprobe.VProbe(model)
    ids, last, _ = vprobe._batch(made)
    embeds = model.get_input_embeddings()(ids) + probe.left[ids] @ probe.right
    states = model(inputs_embeds=embeds, output_hidden_states=True).hidden_states
    reference = hidden_states_at(wrap(model, VOCAB), [e.ids for e in made], [[len(e.ids) - 1] for e in made],
                                 progress=False)
    for row, example in enumerate(made):
        for layer in range(len(states) - 1):  # the last one is after the final norm in transformers
            torch.testing.assert_close(states[layer][row, last[row]], reference[row][layer, 0], rtol=1e-4, atol=1e-4)


def test_probe_learns_a_label_the_query_token_gives_away_and_it_holds_on_held_out_contexts():
    """A sanity task every layer can solve: is the queried item's owner the first name of its hierarchy?

    Every query is "<bos> n [PROBE] name" with a number n in front; the probe is fitted on n in 0..11 and
    scored on n in 12..22, contexts it never saw, so a probe that memorised its rows cannot pass.
    """
    model = build_model("llama", len(VOCAB), n_layers=1, d_model=32, n_heads=4, max_len=256, seed=0)
    owners = {level[0] for hierarchy in igsm.HIERARCHIES for level in hierarchy}
    names = [name for hierarchy in igsm.HIERARCHIES for level in hierarchy for name in level]
    rng = random.Random(0)

    def made(numbers: range) -> list[vprobe.Example]:
        return [vprobe.Example(VOCAB.encode([str(rng.choice(numbers)), igsm.PROBE, name], bos=True), int(name in owners))
                for name in names for _ in range(2)]

    train, held_out = made(range(0, 12)), made(range(12, igsm.MOD))
    assert 0.1 < np.mean([e.label for e in held_out]) < 0.9  # both classes: a constant guess cannot pass
    hits = vprobe.fit_and_score(model, train, held_out, epochs=40, lr=5e-2, batch_size=len(train))
    assert hits.shape == (2, len(held_out))
    # the hand-computed label (name in owners) is what hits compare against: every layer must get it right
    assert np.all(hits.mean(axis=1) >= 0.95), hits.mean(axis=1)


def test_vprobe_report_rows_for_the_model_and_its_random_twin(tmp_path):
    """vprobe_report: per label and layer, rows for the model and a random twin of its shape (other weights);
    scored on held-out-template problems, two examples each where both classes exist (counted by hand); resumes."""
    # seed 1: random_like(seed=0) rebuilds exactly what build_model(seed=0) initialises, i.e. the twin of a model
    # trained from seed 0 is its own initialisation; an untrained stand-in must start elsewhere to differ from it
    model = build_model("llama", len(VOCAB), n_layers=1, d_model=32, n_heads=4, max_len=256, seed=1)
    twin = vprobe.random_like(model, seed=0)
    assert type(twin) is type(model) and twin.config.to_dict() == model.config.to_dict()
    assert not torch.equal(twin.get_input_embeddings().weight, model.get_input_embeddings().weight)
    config = igsm.PRESETS["cpu"]
    results = ResultsFile(tmp_path / "vprobe.csv")
    vprobe.vprobe_report(wrap(model, VOCAB, "tiny-igsm"), config, results, labels=("nece", "dep"), n_train=10,
                         n_test=8, epochs=1, progress=False)
    frame = read_results(tmp_path / "vprobe.csv")
    held_out = vprobe.probe_problems(config, 8, "test")
    assert {p.split() for p in held_out} == {"test"} and {p.split() for p in vprobe.probe_problems(config, 10, "train")} == {"train"}
    nece_by_hand = 2 * sum(0 < len(p.nece) < len(p.params) for p in held_out)  # a needed and an unneeded one
    assert set(frame.method) == {"vprobe-trained", "vprobe-random"} and set(frame.subtask) == {"nece", "dep"}
    for (method, label), unit in frame.groupby(["method", "subtask"]):
        assert sorted(unit.layer) == [0, 1] and unit.value.between(0, 1).all()
        assert (unit.n_items == nece_by_hand).all() if label == "nece" else (unit.n_items > 0).all()
    pivot = frame.pivot_table(index=["subtask", "layer"], columns="method", values="value")
    assert not np.allclose(pivot["vprobe-trained"], pivot["vprobe-random"])  # two different models were probed
    before = frame.copy()
    vprobe.vprobe_report(wrap(model, VOCAB, "tiny-igsm"), config, ResultsFile(tmp_path / "vprobe.csv"),
                         labels=("nece", "dep"), n_train=10, n_test=8, epochs=1, progress=False)
    assert read_results(tmp_path / "vprobe.csv").equals(before)
