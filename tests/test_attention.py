"""Attention rows for the strip: the step's own pass, equal to the reference model's."""

import pytest
import torch

from minigpt.models.checkpoint import load
from minigpt.engine.engine import Engine
from minigpt.errors import GenerationError
from minigpt.settings import SamplingSettings
from reference import book_h_params, book_logits, random_book_state_dict
from reference_gpt2 import random_nanogpt


def reference_attention(sd, hp, ids):
    rows = []
    book_logits(sd, hp, ids, attention=rows)
    return torch.stack(rows)  # [layers, heads, window]


@pytest.fixture
def book(tmp_path):
    hp = book_h_params(max_token_value=500, context_length=8, num_blocks=3, num_heads=4)
    sd = random_book_state_dict(hp, seed=3, scale=0.8)
    path = tmp_path / "m.ckpt"
    torch.save({"model_state_dict": sd, "h_params": hp}, path)
    return sd, hp, path


class Chars:
    name = "chars"

    def encode(self, text):
        return [ord(c) % 500 for c in text]

    def special_name(self, i):
        return None

    def token_bytes(self, i):
        return chr(0x41 + i % 26).encode()


def make_engine(book):
    sd, hp, _ = book
    from minigpt.models.book import Model
    model = Model(hp).eval()
    model.load_state_dict(sd)
    engine = Engine(model, Chars(), SamplingSettings(temperature=1.0, max_new_tokens=30))
    engine.reset("abc")
    return engine


def test_every_step_matches_the_reference_including_past_the_window(book):
    sd, hp, _ = book
    engine = make_engine(book)
    engine.capture_attention = True
    steps = list(engine.run(12))  # 15 tokens: past the context of 8
    for step in steps[::3] + [None]:
        index = None if step is None else step.index
        got = engine.attention(index)
        position = len(engine.tokens) if step is None else step.position
        window = engine.tokens[:position][-8:]
        assert got.window_ids == tuple(window) and got.position == position
        ref = reference_attention(sd, hp, window)
        assert torch.allclose(torch.tensor(got.weights, dtype=torch.float64), ref, atol=1e-5)
        assert all(abs(sum(head) - 1) < 1e-5 for layer in got.weights for head in layer)


def test_captured_during_the_run_no_second_model_run(book, monkeypatch):
    engine = make_engine(book)
    engine.capture_attention = True
    list(engine.run(5))
    calls = []
    real = engine.decoder.last_logits
    monkeypatch.setattr(engine.decoder, "last_logits",
                        lambda ids, progress=None: calls.append(1) or real(ids, progress))
    for index in range(1, 6):
        engine.attention(index)
    assert calls == []
    engine.attention(None)  # the next token's logits were not computed yet: one run
    engine.attention(None)
    assert len(calls) == 1


def test_without_capture_asking_costs_one_run_and_matches(book):
    sd, hp, _ = book
    engine = make_engine(book)
    list(engine.run(4))
    assert engine.capture_attention is False
    got = engine.attention(2)
    ref = reference_attention(sd, hp, engine.tokens[:engine.steps[1].position])
    assert torch.allclose(torch.tensor(got.weights, dtype=torch.float64), ref, atol=1e-5)
    assert engine.capture_attention is False  # left as it was
    assert [c.id for c in engine.step().candidates] == [c.id for c in engine.steps[-1].candidates]


def test_undo_forgets_rows_of_tokens_that_changed(book):
    engine = make_engine(book)
    engine.capture_attention = True
    list(engine.run(4))
    before = engine.attention(4)
    engine.undo(), engine.undo()
    engine.step(next(c.id for c in engine.peek().candidates[1:]))
    engine.step()
    after = engine.attention(4)
    assert after.window_ids != before.window_ids and after.weights != before.weights


def test_nanogpt_rows_match_the_reference(tmp_path):
    from minigpt.models.nanogpt import NanoGPT
    from reference_gpt2 import gpt2_logits
    args = dict(n_layer=2, n_head=2, n_embd=16, block_size=8, bias=True, vocab_size=40)
    sd = random_nanogpt(args, seed=4)["model"]
    model = NanoGPT(dict(d_model=16, num_heads=2, num_blocks=2, context_length=8,
                         max_token_value=40, bias=True)).eval()
    model.load_state_dict(sd)
    engine = Engine(model, Chars(), SamplingSettings(temperature=1.0))
    engine.reset("!#%'\"$&!#%'")  # 11 tokens with ids below 40; a window of 8

    got = engine.attention()
    rows = []
    gpt2_logits(sd, args, engine.tokens, attention=rows)
    ref = torch.stack(rows)
    assert got.window_ids == tuple(engine.tokens[-8:])
    assert torch.allclose(torch.tensor(got.weights, dtype=torch.float64), ref, atol=1e-5)


def test_decoders_without_attention_say_so(book):
    engine = make_engine(book)

    class Plain:
        context_length = 8

        def last_logits(self, ids, progress=None):
            return torch.zeros(500)

    engine.decoder = Plain()
    with pytest.raises(GenerationError, match="cannot show attention"):
        engine.attention()
