"""KV-cache decoding is exact: every step's logits equal a full recomputation."""

import random

import pytest
import torch

from minigpt.decode.decoder import BookDecoder
from minigpt.engine.engine import Engine
from minigpt.models.book import Model
from minigpt.settings import SamplingSettings
from minigpt.text.tokenizer import cl100k
from reference import book_h_params, random_book_state_dict

SHAPES = [dict(d_model=32, num_heads=4, num_blocks=2, context_length=16),
          dict(d_model=24, num_heads=3, num_blocks=3, context_length=7),
          dict(d_model=64, num_heads=8, num_blocks=1, context_length=32)]


def make_model(shape, vocab=100256, seed=0):
    hp = book_h_params(max_token_value=vocab, **shape)
    model = Model(hp).eval()
    model.load_state_dict(random_book_state_dict(hp, seed))
    return model


def full_logits(model, tokens):
    with torch.no_grad():
        return model(torch.tensor([tokens[-model.context_length:]]))[0][0, -1]


def assert_close(a, b):
    assert ((a - b).abs().max() / b.abs().max()).item() < 1e-5


@pytest.mark.parametrize("shape", SHAPES)
def test_random_walk_of_steps_takes_and_undos(shape):
    """Sample, take candidates and undo in random order, past the context window."""
    model = make_model(shape, vocab=20000)  # the prompt's ids are all below 14000
    engine = Engine(model, cl100k(), SamplingSettings(temperature=1.0, seed=1))
    engine.reset("The book's tiny GPT continues")
    rng = random.Random(0)
    for _ in range(3 * shape["context_length"]):
        action = rng.random()
        if action < 0.2 and engine.steps:
            engine.undo()
        elif action < 0.4:
            engine.step(engine.peek().candidates[rng.randrange(5)].id)
        else:
            engine.step()
        assert_close(engine._logits(), full_logits(model, engine.tokens))
    assert len(engine.tokens) > shape["context_length"]


def test_decoder_reuses_the_identical_prefix():
    model = make_model(SHAPES[0], vocab=500)
    decoder = BookDecoder(model)
    with torch.inference_mode():
        decoder.last_logits([1, 2, 3, 4])
        decoder.k_cache[..., 4:, :] = float("nan")  # positions beyond the prefix must be rewritten
        out = decoder.last_logits([1, 2, 3, 4, 5])
        assert_close(out, full_logits(model, [1, 2, 3, 4, 5]))
        decoder.k_cache[..., :3, :] = 0  # a different window must not reuse stale positions
        out = decoder.last_logits([9, 2, 3])
        assert_close(out, full_logits(model, [9, 2, 3]))


def test_repeated_window_after_slide_is_exact():
    model = make_model(SHAPES[1], vocab=500)
    decoder = BookDecoder(model)
    ids = [7] * 20
    with torch.inference_mode():
        for n in range(1, 20):
            assert_close(decoder.last_logits(ids[:n][-7:]), full_logits(model, ids[:n]))


def test_output_weight_is_relaid_once_with_the_same_values():
    """The decoder keeps the output weight as [d, V] for a faster matvec; the model's
    parameter must still hold the same values (state dict, book forward) in one copy."""
    model = make_model(SHAPES[0], vocab=500)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        logits_before = model(torch.tensor([[1, 2, 3]]))[0]
    decoder = BookDecoder(model)
    weight = model.model_out_linear_layer.weight
    assert weight.shape == before["model_out_linear_layer.weight"].shape
    assert weight.data_ptr() == decoder.out_weight_t.data_ptr()  # one copy
    assert decoder.out_weight_t.is_contiguous() and decoder.out_weight_t.shape == (32, 500)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    with torch.no_grad():
        assert torch.allclose(model(torch.tensor([[1, 2, 3]]))[0], logits_before, atol=1e-5)
