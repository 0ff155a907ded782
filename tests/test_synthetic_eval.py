"""Sampling, exact-match answers and probes of models trained on synthetic data."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from layerprobe.engine import hidden_states_at
from layerprobe.probes import cross_validate
from layerprobe.results import ResultsFile, read_results
from layerprobe.synthetic.evaluate import answers_correct, cfg_generation, sample
from layerprobe.synthetic import bios, evaluate, report
from layerprobe.synthetic.report import ProbeOptions, bios_report, cfg_report
from layerprobe.synthetic.runs import RunConfig, new_model, random_twin
from layerprobe.synthetic.train import build_model, train, wrap
from layerprobe.synthetic.vocab import Vocab

COPY_VOCAB = Vocab("abcdefgh|")
SPAN = 8


def copy_batch(step: int, batch: int = 24) -> torch.Tensor:
    """<bos> x1..x8 | x1..x8: after '|' the model must recall the tokens by position."""
    generator = torch.Generator().manual_seed(step)
    body = torch.randint(3, 11, (batch, SPAN), generator=generator)
    bar = torch.full((batch, 1), COPY_VOCAB.ids["|"])
    return torch.cat([torch.full((batch, 1), Vocab.bos_id), body, bar, body], dim=1)


@pytest.fixture(scope="module")
def copy_models():
    trained = build_model("llama", len(COPY_VOCAB), 2, 32, 4, 32, seed=0)
    train(trained, copy_batch, steps=120, lr=1e-2, progress=False)
    return wrap(trained, COPY_VOCAB, "copy"), wrap(build_model("llama", len(COPY_VOCAB), 2, 32, 4, 32, seed=0), COPY_VOCAB)


def greedy_by_hand(lm, prompt: list[int], steps: int) -> list[int]:
    """Token by token, full forward each time, no cache: the reference for both decoders."""
    ids = list(prompt)
    for _ in range(steps):
        ids.append(int(lm.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt):]


def test_probe_on_the_trained_model_beats_the_random_model(copy_models):
    trained, random = copy_models
    batch = copy_batch(10_000, batch=160)
    sequences = batch.tolist()
    positions = [[SPAN + 1]] * len(sequences)  # the '|': the next token is x1
    labels = batch[:, 1].numpy()
    scores = {}
    for name, lm in [("trained", trained), ("random", random)]:
        states = torch.cat(hidden_states_at(lm, sequences, positions, progress=False), dim=1)
        scores[name] = cross_validate(states, labels, folds=4, seed=0, control=False).mean()
    assert scores["trained"][-1] > 0.9  # the last layer holds x1, which the model is about to copy
    assert scores["trained"][-1] > scores["random"][-1] + 0.2  # the random model keeps some x1 (~0.7)
    assert scores["trained"][0] < 0.3 and scores["random"][0] < 0.3  # the '|' embedding alone says nothing


def test_exact_match_and_sampling_agree_with_greedy_decoding(copy_models):
    trained, _ = copy_models
    prompts = copy_batch(20_000, batch=4)[:, : SPAN + 2].tolist()
    by_hand = [greedy_by_hand(trained, p, SPAN) for p in prompts]
    assert np.mean([h == p[1:SPAN + 1] for h, p in zip(by_hand, prompts)]) > 0.8  # it learned to copy
    wrong = [[(t - 3 + 1) % 8 + 3 for t in h] for h in by_hand]
    # answers_correct also demands <eos> after the answer: compare against the hand decoder's 5th token
    eos_next = [greedy_by_hand(trained, p + h, 1)[0] == Vocab.eos_id for p, h in zip(prompts, by_hand)]
    assert answers_correct(trained, prompts, by_hand).tolist() == eos_next
    assert not answers_correct(trained, prompts, wrong).any()
    cold = sample(trained, prompts, max_new=SPAN, seed=0, temperature=1e-4)  # ~greedy, through the KV cache
    assert [tokens for tokens, _ in cold] == [h[: len(tokens)] for h, (tokens, _) in zip(by_hand, cold)]
    assert all(len(tokens) == SPAN or ended for tokens, ended in cold)
    warm = [sample(trained, prompts, max_new=SPAN, seed=s, temperature=3.0) for s in (1, 1, 2)]
    assert warm[0] == warm[1] != warm[2]  # deterministic by seed


def test_cfg_report_writes_rows_that_match_the_checker_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "_cfg_label_names", lambda depth: ["ancestor/level2", "span_end/level3"])  # time
    config = RunConfig(world="cfg", grammar="small", layers=2, width=32, heads=4)
    grammar, vocab = config.grammar_(), config.vocab()
    lm = wrap(new_model(config, vocab), vocab, "tiny-cfg")
    options = ProbeOptions(samples=4, cut=5, strings=24, positions=4, folds=2)
    results = ResultsFile(tmp_path / "cfg.csv")
    cfg_report(config, lm, random_twin(config, lm), results, options)
    frame = read_results(tmp_path / "cfg.csv")
    row = frame[(frame.subtask == "cut5") & (frame.metric == "accuracy")]
    assert row.value.item() == 0 and row.n_items.item() == 4 and row.layer.item() == -1  # an untrained model
    probes = frame[(frame.task == "cfg") & (frame.metric == "accuracy")]
    assert set(probes.method) == {"probe-trained", "probe-random"}
    assert set(probes.subtask) == {"ancestor/level2", "span_end/level3"}
    assert len(probes) == 2 * 2 * 3  # methods x labels x layers 0..2
    before = frame.copy()
    cfg_report(config, lm, random_twin(config, lm), ResultsFile(tmp_path / "cfg.csv"), options)
    assert read_results(tmp_path / "cfg.csv").equals(before)  # resumed: nothing recomputed or duplicated


def derives(grammar, symbol: int, string: tuple[int, ...], memo: dict) -> bool:
    """Naive top-down recogniser: can `symbol` derive exactly `string` (every split of every rule tried)?"""
    key = (symbol, string)
    if key not in memo:
        if symbol not in grammar.rules:
            memo[key] = string == (symbol,)
        else:
            memo[key] = any(splits(grammar, rule, string, memo) for rule in grammar.rules[symbol])
    return memo[key]


def splits(grammar, rule: tuple[int, ...], string: tuple[int, ...], memo: dict) -> bool:
    if len(rule) == 1:
        return derives(grammar, rule[0], string, memo)
    return any(derives(grammar, rule[0], string[:cut], memo) and splits(grammar, rule[1:], string[cut:], memo)
               for cut in range(1, len(string) - len(rule) + 2))


class BranchingOracle(torch.nn.Module):
    """A stand-in LM (with the KV-cache calling convention `sample` uses): after <bos> alone it samples one of
    two first tokens 50/50, then writes a grammar string `good` or a string `bad` (`good` cut short) and <eos>;
    after any longer prompt it writes <eos> at once."""

    def __init__(self, vocab: Vocab, good: list[int], bad: list[int]):
        super().__init__()
        self.vocab, self.size = vocab, len(vocab)
        self.plans = [vocab.encode([str(t) for t in plan], eos=True) for plan in (good, bad)]
        assert self.plans[0][0] != self.plans[1][0]

    def forward(self, input_ids, past_key_values=None, use_cache=True):
        ids = input_ids if past_key_values is None else torch.cat([past_key_values, input_ids], dim=1)
        logits = torch.full((len(ids), ids.shape[1], self.size), -1e9)
        for row, sequence in enumerate(ids.tolist()):
            written = sequence[1:]
            if not written:
                logits[row, -1, [plan[0] for plan in self.plans]] = 0.0  # the 50/50 branch
                continue
            plan = next((p for p in self.plans if p[: len(written)] == written), None)
            logits[row, -1, plan[len(written)] if plan and len(written) < len(plan) else Vocab.eos_id] = 0.0
        return SimpleNamespace(logits=logits, past_key_values=ids)


def test_cfg_generation_rows_equal_an_independent_parse_of_the_samples(tmp_path, monkeypatch):
    """The report's accuracy, distinct and mean_length rows against what was sampled, parsed by a naive recogniser."""
    monkeypatch.setattr(report, "_cfg_label_names", lambda depth: [])  # generation rows only
    monkeypatch.setattr(report, "attention_rows", lambda *args: [])  # the oracle has no attention (test_cfg_analyses.py)
    config = RunConfig(world="cfg", grammar="small", layers=2, width=32, heads=4)
    grammar, vocab = config.grammar_(), config.vocab()
    rng = np.random.default_rng(123)
    good = grammar.sample(rng).terminals
    bad = next(s.terminals for s in iter(lambda: grammar.sample(rng), None) if s.terminals[0] != good[0])[:-1]
    memo: dict = {}
    assert derives(grammar, grammar.root, tuple(good), memo) and not derives(grammar, grammar.root, tuple(bad), memo)
    lm = SimpleNamespace(name="oracle", model=BranchingOracle(vocab, good, bad), tokenizer=vocab, n_layers=2,
                         device=torch.device("cpu"))
    sampled: list[tuple[list[int], tuple[list[int], bool]]] = []
    original = evaluate.sample

    def spy(model, prompts, *args, **kwargs):
        out = original(model, prompts, *args, **kwargs)
        sampled.extend(zip(prompts, out))
        return out

    monkeypatch.setattr(evaluate, "sample", spy)
    cfg_report(config, lm, lm, ResultsFile(tmp_path / "cfg.csv"), ProbeOptions(samples=24, cut=5))
    frame = read_results(tmp_path / "cfg.csv")
    assert len(sampled) == 72  # root, cut5 and cut5 from a corrupted prompt (judged after the clean one: not here)
    for subtask, chunk in (("root", sampled[:24]), ("cut5", sampled[24:48])):
        strings, accepted = [], []
        for prompt, (tokens, ended) in chunk:
            text = vocab.decode(prompt[1:] + tokens, skip_special=False)
            strings.append(tuple(text))
            accepted.append(ended and derives(grammar, grammar.root, tuple(int(t) for t in text), memo))
        rows = frame[(frame.subtask == subtask) & (frame.method == "sample")].set_index("metric")
        assert rows.loc["accuracy", "value"] == pytest.approx(np.mean(accepted))
        assert rows.loc["distinct", "value"] == pytest.approx(len(set(strings)) / len(strings))
        assert rows.loc["mean_length", "value"] == pytest.approx(np.mean([len(t) for t in strings]))
        if subtask == "root":
            assert 0 < np.mean(accepted) < 1 and len(set(strings)) == 2  # both branches were sampled


def test_bios_report_qa_rows_count_what_an_oracle_answers_and_probes_cover_every_attribute(tmp_path):
    """bios_report: with a forward hook that makes the model answer exactly the known people's QA (every
    token, then <eos>), each QA accuracy row is the known share of its split, counted by hand; the P/Q-probe
    rows cover every position, attribute and layer, for the model and its random twin; a rerun adds nothing."""
    config = RunConfig(world="bios", layers=2, width=32, heads=4, people=24)
    population, vocab = config.population(), config.vocab()
    lm = wrap(new_model(config, vocab), vocab, "tiny-bios")
    known = set(population.qa_train[::2]) | set(population.qa_test[:1])
    answers = {}
    for person in known:
        for task in bios.ATTRIBUTES:
            prompt, answer = bios.qa_tokens(population.people[person], task)
            answers[tuple(vocab.encode(prompt, bos=True))] = vocab.encode(answer, eos=True)

    def oracle(module, args, kwargs, output):
        for row, ids in enumerate(kwargs["input_ids"].tolist()):
            for prompt, answer in answers.items():
                if tuple(ids[: len(prompt)]) == prompt:
                    for j, token in enumerate(answer):
                        output.logits[row, len(prompt) - 1 + j, token] = 1e4
        return output

    handle = lm.model.register_forward_hook(oracle, with_kwargs=True)
    try:
        options = ProbeOptions(folds=2)
        bios_report(config, lm, random_twin(config, lm), ResultsFile(tmp_path / "bios.csv"), options)
    finally:
        handle.remove()
    frame = read_results(tmp_path / "bios.csv")
    qa = frame[frame.task == "bios-qa"]
    for split, people in (("train", population.qa_train), ("test", population.qa_test)):
        share = len(known & set(people)) / len(people)
        rows = qa[qa.language == split].set_index("attribute")
        assert set(rows.index) == set(bios.ATTRIBUTES) | {"all"}
        assert rows.value.to_numpy() == pytest.approx(share) and (rows.n_items[list(bios.ATTRIBUTES)] == len(people)).all()
    assert 0 < len(known & set(population.qa_test)) < len(population.qa_test)
    probes = frame[frame.task == "bios"]
    assert set(probes.method) == {"probe-trained", "probe-random"}
    assert set(probes.subtask) == ({f"{p}/{a}" for p in ("p-probe", "q-probe") for a in bios.ATTRIBUTES}
                                   | {f"p-probe-before/{a}" for a in bios.ATTRIBUTES})
    accuracy = probes[probes.metric == "accuracy"]
    assert (accuracy.groupby(["method", "subtask"]).layer.apply(sorted).apply(lambda x: x == [0, 1, 2])).all()
    before = frame.copy()
    bios_report(config, lm, random_twin(config, lm), ResultsFile(tmp_path / "bios.csv"), options)
    assert read_results(tmp_path / "bios.csv").equals(before)
