"""The synthetic training loop: it learns, it resumes exactly, its vocabulary round-trips."""

import pandas as pd
import pytest
import torch

from layerprobe.errors import LayerprobeError
from layerprobe.synthetic.train import build_model, load_trained, train, wrap
from layerprobe.synthetic.vocab import Vocab

VOCAB = Vocab("abcd")


def cycle_batch(step: int) -> torch.Tensor:
    """Sequences a b c d a b ... from a random start: predictable after the first token."""
    generator = torch.Generator().manual_seed(step)
    start = torch.randint(0, 4, (8, 1), generator=generator)
    body = (start + torch.arange(24)) % 4 + 3
    return torch.cat([torch.full((8, 1), Vocab.bos_id), body], dim=1)


@pytest.mark.parametrize("arch,rotary", [("llama", True), ("gpt2", False)])
def test_tiny_training_lowers_the_loss(arch, rotary):
    model = build_model(arch, len(VOCAB), n_layers=2, d_model=32, n_heads=4, max_len=64, rotary=rotary, seed=0)
    result = train(model, cycle_batch, steps=30, lr=3e-3, progress=False)
    first, last = result.curve["loss"].iloc[0], result.final_loss
    assert first > 1.2  # about log(4) or more at the start
    assert last < 0.6 * first
    assert result.tokens == 30 * 8 * 25


def test_interrupted_run_resumes_to_the_same_weights_and_curve(tmp_path):
    def make():
        return build_model("llama", len(VOCAB), 2, 32, 4, 64, seed=1)

    reference = make()
    train(reference, cycle_batch, steps=10, lr=3e-3, log_every=1, checkpoint_every=3, progress=False,
          out_dir=tmp_path / "a", curve_csv=tmp_path / "a.csv")

    def crashing(step: int) -> torch.Tensor:
        if step == 7:
            raise KeyboardInterrupt
        return cycle_batch(step)

    interrupted = make()
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, crashing, steps=10, lr=3e-3, log_every=1, checkpoint_every=3, progress=False,
              out_dir=tmp_path / "b", curve_csv=tmp_path / "b.csv")
    assert len(pd.read_csv(tmp_path / "b.csv")) == 6  # the checkpoint at step 6
    resumed = make()  # a fresh process would start from new random weights too
    train(resumed, cycle_batch, steps=10, lr=3e-3, log_every=1, checkpoint_every=3, progress=False,
          out_dir=tmp_path / "b", curve_csv=tmp_path / "b.csv")
    for name, tensor in reference.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv"))

    VOCAB.save(tmp_path / "b" / "vocab.json")
    loaded = load_trained(tmp_path / "b")
    ids = cycle_batch(0)
    assert torch.allclose(loaded.model(input_ids=ids).logits, resumed(input_ids=ids).logits, atol=1e-5)
    with pytest.raises(LayerprobeError, match="10-step run"):
        train(make(), cycle_batch, steps=12, out_dir=tmp_path / "b", progress=False)


@pytest.mark.parametrize("arch,rotary", [("llama", True), ("gpt2", False), ("gpt2", True)])
def test_wrap_gives_the_lens_adapter_the_model_logits(arch, rotary):
    model = build_model(arch, len(VOCAB), 2, 32, 4, 64, rotary=rotary, seed=0)
    lm = wrap(model, VOCAB)
    captured = []
    handle = lm.adapter.blocks[-1].register_forward_hook(
        lambda module, args, output: captured.append(output[0] if isinstance(output, tuple) else output))
    ids = cycle_batch(0)
    logits = lm.model(input_ids=ids).logits
    handle.remove()
    assert lm.n_layers == 2 and lm.tokenizer is VOCAB
    assert torch.allclose(lm.adapter.to_logits(captured[0]), logits, atol=1e-5)


def test_vocab_round_trip(tmp_path):
    vocab = Vocab(["the", "cat", "sat", "the"])
    assert len(vocab) == 6 and vocab.tokens[3:] == ["the", "cat", "sat"]
    ids = vocab.encode(["the", "cat"], bos=True, eos=True)
    assert ids == [1, 3, 4, 2]
    assert vocab.decode(ids) == ["the", "cat"]
    vocab.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json").tokens == vocab.tokens
    with pytest.raises(KeyError, match="dog"):
        vocab.encode(["dog"])
