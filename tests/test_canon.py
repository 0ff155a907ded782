"""Canon layers: causal, not a no-op at any place, the parameter formula, and a checkpoint the tools still read."""

import numpy as np
import pytest
import torch
from tiny import VOCAB, byte_tokenizer

from layerprobe import engine
from layerprobe.errors import LayerprobeError
from layerprobe.lens import LogitLens
from layerprobe.models import load_model
from layerprobe.reference import naive_score_items
from layerprobe.synthetic.canon import Canon, canon_letters, n_canon_parameters, previous_positions
from layerprobe.synthetic.train import build_model, load_trained, n_parameters, train
from layerprobe.synthetic.vocab import Vocab
from layerprobe.tasks.base import MCItem

LAYERS, WIDTH, HEADS = 2, 32, 4


def canon_model(canon: str, vocab: int = 40, seed: int = 0):
    return build_model("llama", vocab, LAYERS, WIDTH, HEADS, 64, seed=seed, canon=canon).eval()


def logits(model, ids: torch.Tensor, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False, **kwargs).logits


def test_canon_module_is_a_causal_depthwise_convolution_plus_the_input():
    torch.manual_seed(0)
    canon = Canon(6, {})
    hidden = torch.randn(2, 9, 6)
    # conv1d's kernel runs oldest to newest: tap j (the j-th previous token) is kernel index 3 - j
    kernel = canon.weight.flip(-1)[:, None, :]
    expected = hidden + torch.nn.functional.conv1d(
        torch.nn.functional.pad(hidden.transpose(1, 2), (3, 0)), kernel, groups=6).transpose(1, 2)
    with torch.no_grad():
        assert torch.allclose(canon(hidden), expected, atol=1e-6)  # no mask: the convolution path
        canon.taps["index"] = previous_positions(torch.ones(2, 9), 2, 9, torch.device("cpu"))
        assert torch.allclose(canon(hidden), expected, atol=1e-6)  # a mask: the gathering path


@pytest.mark.parametrize("canon", ["A", "B", "C", "D", "ABCD"])
def test_output_at_t_does_not_depend_on_later_tokens(canon):
    model = canon_model(canon)
    ids = torch.randint(3, 40, (3, 12), generator=torch.Generator().manual_seed(1))
    for t in (0, 4, 10):
        changed = ids.clone()
        changed[:, t + 1:] = torch.randint(3, 40, changed[:, t + 1:].shape, generator=torch.Generator().manual_seed(t))
        before, after = logits(model, ids), logits(model, changed)
        assert torch.equal(before[:, : t + 1], after[:, : t + 1])
        assert not torch.allclose(before[:, t + 1:], after[:, t + 1:])


@pytest.mark.parametrize("canon", ["A", "B", "C", "D"])
def test_each_place_changes_the_output_and_zero_weights_give_back_llama(canon):
    model, plain = canon_model(canon), canon_model("")
    missing = plain.load_state_dict(model.state_dict(), strict=False).unexpected_keys
    assert missing and all("canon" in key for key in missing)
    ids = torch.randint(3, 40, (2, 10), generator=torch.Generator().manual_seed(2))
    assert (logits(model, ids) - logits(plain, ids)).abs().max() > 1e-3
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "canon" in name:
                parameter.zero_()
    assert torch.allclose(logits(model, ids), logits(plain, ids), atol=1e-5)


@pytest.mark.parametrize("canon", ["A", "B", "C", "D", "AC", "ABCD"])
def test_parameter_count_matches_the_formula(canon):
    added = n_parameters(canon_model(canon)) - n_parameters(canon_model(""))
    channels = {"A": WIDTH, "B": 3 * WIDTH, "C": WIDTH, "D": 2 * 4 * WIDTH}  # kv = d here, ffn = 4d
    assert added == LAYERS * 4 * sum(channels[place] for place in canon)
    assert added == n_canon_parameters(canon, LAYERS, WIDTH, WIDTH, 4 * WIDTH)


def test_letters_and_architecture_are_checked():
    assert canon_letters("dBa") == "ABD" and canon_letters("none") == ""
    for bad in ("AE", "AA"):
        with pytest.raises(LayerprobeError):
            canon_letters(bad)
    with pytest.raises(LayerprobeError, match="llama"):
        build_model("gpt2", 40, 2, 32, 4, 64, canon="A")


def test_taps_skip_padding_and_other_candidates():
    keep = torch.tensor([[0, 0, 1, 1, 1]])
    assert previous_positions(keep, 1, 5, torch.device("cpu"))[0, 4].tolist() == [4, 3, 2, -1]
    # packed: prompt 0-1, candidate one at 2-3, candidate two at 4-5 (sees the prompt and itself only)
    segment = torch.tensor([-1, -1, 0, 0, 1, 1])
    allowed = torch.ones(6, 6, dtype=torch.bool).tril() & ((segment[None] == -1) | (segment[None] == segment[:, None]))
    additive = torch.zeros(1, 1, 6, 6).masked_fill(~allowed, torch.finfo(torch.float32).min)
    assert previous_positions(additive, 1, 6, torch.device("cpu"))[0, 5].tolist() == [5, 4, 1, 0]


def test_left_padded_generation_equals_greedy_full_forwards():
    model = canon_model("ABCD")
    prompts = [[1, 5, 9, 7, 3], [1, 8, 4]]
    ids = torch.full((2, 5), 7, dtype=torch.long)  # a pad id with a nonzero embedding: the mask must hide it
    attention = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, 5 - len(prompt):], attention[row, 5 - len(prompt):] = torch.tensor(prompt), 1
    padded = logits(model, ids, attention_mask=attention)
    for row, prompt in enumerate(prompts):  # the pad tokens are not among the taps of the first real tokens
        alone = logits(model, torch.tensor([prompt]))[0]
        assert torch.allclose(padded[row, 5 - len(prompt):], alone, atol=1e-5)
    with torch.no_grad():
        generated = model.generate(input_ids=ids, attention_mask=attention, max_new_tokens=6, do_sample=False,
                                   pad_token_id=7, eos_token_id=None)
    for row, prompt in enumerate(prompts):
        sequence = list(prompt)
        for _ in range(6):  # unpadded, one full forward per token
            sequence.append(int(logits(model, torch.tensor([sequence]))[0, -1].argmax()))
        assert generated[row, 5:].tolist() == sequence[len(prompt):]


@pytest.mark.parametrize("canon", ["A", "ABCD"])
def test_cached_steps_give_the_full_forwards_logits(canon):
    """A KV cache plus each Canon layer's kept state: every cached step equals a full forward's last position,
    with a left-padded row; a multi-token cached step is refused."""
    model = canon_model(canon)
    ids = torch.tensor([[7, 7, 1, 5, 6], [2, 9, 4, 8, 3]])
    attention = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    with torch.no_grad():
        output = model(input_ids=ids, attention_mask=attention, use_cache=True)
        for new in ([11, 12], [13, 14], [15, 16], [17, 18]):
            ids = torch.cat([ids, torch.tensor(new)[:, None]], dim=1)
            attention = torch.cat([attention, torch.ones(2, 1, dtype=attention.dtype)], dim=1)
            output = model(input_ids=ids[:, -1:], attention_mask=attention, past_key_values=output.past_key_values,
                           use_cache=True)
            full = logits(model, ids, attention_mask=attention)[:, -1]
            assert torch.allclose(output.logits[:, -1], full, atol=1e-5)
        with pytest.raises(LayerprobeError, match="one token at a time"):
            model(input_ids=ids[:, -2:], past_key_values=output.past_key_values, use_cache=True)


def test_trained_run_reloads_with_its_canon_layers(tmp_path):
    vocab = Vocab([f"t{i}" for i in range(20)])
    model = build_model("llama", len(vocab), LAYERS, WIDTH, HEADS, 32, canon="AD")

    def batch_fn(step: int) -> torch.Tensor:
        return torch.randint(3, len(vocab), (4, 12), generator=torch.Generator().manual_seed(step))

    train(model, batch_fn, steps=3, out_dir=tmp_path, progress=False)
    vocab.save(tmp_path / "vocab.json")
    loaded = load_trained(tmp_path)
    assert type(loaded.model).__name__ == "CanonLlamaForCausalLM" and loaded.model.config.canon == "AD"
    ids = batch_fn(99)
    assert torch.equal(logits(model.eval(), ids), logits(loaded.model, ids))


@pytest.fixture
def canon_folder(tmp_path, monkeypatch):
    """A Canon model with a tokenizer, saved as a Hugging Face folder (weights scaled up to matter)."""
    monkeypatch.setenv("LAYERPROBE_CACHE", str(tmp_path / "cache"))
    model = build_model("llama", VOCAB, 3, WIDTH, HEADS, 512, seed=3, canon="ABCD")
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0.0, 0.2)
    model.save_pretrained(tmp_path / "model")
    byte_tokenizer().save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_engine_and_lens_read_a_canon_checkpoint(canon_folder):
    lm = load_model(str(canon_folder), device="cpu")
    assert lm.adapter.model_type == "canon_llama" and lm.n_layers == 3
    items = [MCItem("Q: 2 + 3 = ?\nA:", [" 5", " 6", " 23", " five hundred"], [0]),
             MCItem("x", [" a", " bb", " ccc"], [1]),
             MCItem("A much longer prompt, padded in a batch:", [" yes", " no"], [1])]
    expected = naive_score_items(lm, items)  # one plain forward per candidate: no packing, no masks
    got = engine.score_items(lm, items, progress=False, use_cache=False)
    for mine, reference in zip(got.logprob, expected):
        np.testing.assert_allclose(mine, reference, atol=2e-4)
    ids = lm.tokenizer("The Canon lens check")["input_ids"]
    states = engine.hidden_states_at(lm, [ids], [list(range(len(ids)))], progress=False)[0]
    lens_logits = LogitLens(lm.adapter)(states[-1], lm.n_layers)
    assert torch.allclose(lens_logits, logits(lm.model, torch.tensor([ids]))[0], atol=1e-4)


def test_khop_answers_are_the_kth_successor_on_one_cycle():
    from layerprobe.synthetic.khop import KHopRun, batch

    run = KHopRun(nodes=6, pool=10, hops=3, queries=5)
    vocab = run.vocab()
    ids, mask, hops = batch(run, vocab, step=7, size=4)
    assert ids.shape == (4, run.length())
    for row in range(4):
        tokens = vocab.decode(ids[row].tolist())
        edges = tokens[: 3 * run.nodes]
        successor = dict(zip(edges[0::3], edges[1::3]))
        assert edges[2::3] == [","] * run.nodes and len(successor) == run.nodes
        walk = [edges[0]]  # one cycle through all nodes
        while successor[walk[-1]] != edges[0]:
            walk.append(successor[walk[-1]])
        assert len(walk) == run.nodes
        questions = tokens[3 * run.nodes:]
        answers = [vocab.tokens[i] for i in ids[row][mask[row]].tolist()]
        for q in range(run.queries):
            mark, start, hop, equals, answer = questions[5 * q: 5 * q + 5]
            node = start
            for _ in range(int(hop[1:])):
                node = successor[node]
            assert (mark, equals, answer, answers[q], int(hop[1:])) == ("?", "=", node, node, int(hops[row, q]))


def test_ablation_script_writes_rows_and_resumes(tmp_path):
    from layerprobe.results import read_results
    from train_canon import main

    args = ["--quick", "--depths", "1", "--canon", "none", "BD", "--out", str(tmp_path / "runs"),
            "--data", str(tmp_path / "data"), "--threads", "1"]
    main(args)
    paths = sorted((tmp_path / "data").glob("canon-khop_*.csv"))
    rows = read_results(paths[0])
    assert len(paths) == 2 and set(rows["subtask"]) == {"canon=BD/hops=1", "canon=BD/hops=2", "canon=BD/all"}
    assert rows["n_params"].iloc[0] - read_results(paths[1])["n_params"].iloc[0] == 4 * (3 * 32 + 8 * 32)
    before = paths[0].stat().st_mtime_ns
    main(args)  # finished: nothing retrained, nothing rewritten
    assert paths[0].stat().st_mtime_ns == before


@pytest.mark.parametrize("script", ["train_canon", "train_igsm", "train_synthetic"])
def test_a_bad_canon_flag_is_a_one_line_usage_error(script, capsys):
    import importlib

    extra = ["--world", "cfg"] if script == "train_synthetic" else []
    with pytest.raises(SystemExit) as stop:
        importlib.import_module(script).parse(extra + ["--canon", "ABE"])
    assert stop.value.code == 2 and "subset of the letters ABCD" in capsys.readouterr().err
    canon = importlib.import_module(script).parse(extra + ["--canon", "da"]).canon
    assert canon == (["AD"] if script == "train_canon" else "AD")
