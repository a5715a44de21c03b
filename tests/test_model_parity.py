"""Our model and engine against an independent implementation of the book's math."""

import pytest
import torch

from minigpt.models.checkpoint import load
from minigpt.engine.engine import Engine
from minigpt.models.book import Model
from minigpt.settings import SamplingSettings
from reference import book_h_params, book_logits, random_book_state_dict


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@pytest.mark.parametrize("shape", [dict(d_model=32, num_heads=4, num_blocks=2, context_length=16),
                                   dict(d_model=24, num_heads=3, num_blocks=1, context_length=8),
                                   dict(d_model=48, num_heads=2, num_blocks=3, context_length=12)])
@pytest.mark.parametrize("length", [3, 8, 30])  # shorter than, equal to and past the context
def test_model_logits_equal_book_math(shape, length):
    hp = book_h_params(max_token_value=500, **shape)
    sd = random_book_state_dict(hp, seed=length)
    model = Model(hp).eval()
    model.load_state_dict(sd)  # the book's names load unchanged
    ids = torch.randint(0, 500, (length,), generator=torch.Generator().manual_seed(1)).tolist()
    C = hp["context_length"]
    with torch.no_grad():
        ours = model(torch.tensor([ids[-C:]]))[0][0]
    assert rel_err(ours, book_logits(sd, hp, ids)) < 1e-5


def test_forward_loss_is_cross_entropy():
    hp = book_h_params(max_token_value=300, context_length=8)
    model = Model(hp).eval()
    model.load_state_dict(random_book_state_dict(hp))
    x = torch.randint(0, 300, (2, 8))
    logits, loss = model(x, x)
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 300), x.reshape(-1))
    assert torch.allclose(loss, expected)
    assert model(x)[1] is None


def test_generate_greedy_crops_to_context_like_the_book():
    hp = book_h_params(max_token_value=400, context_length=8)
    sd = random_book_state_dict(hp, seed=3)
    model = Model(hp).eval()
    model.load_state_dict(sd)
    out = model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=12, temperature=0)[0].tolist()
    ids = [5, 6, 7]
    for _ in range(12):
        ids.append(int(book_logits(sd, hp, ids)[-1].argmax()))
    assert out == ids


def test_generate_top_k_one_is_greedy_and_sampling_is_seeded():
    hp = book_h_params(max_token_value=400, context_length=8)
    model = Model(hp).eval()
    model.load_state_dict(random_book_state_dict(hp, seed=4))
    start = torch.tensor([[1, 2]])
    greedy = model.generate(start, 6, temperature=0)
    assert torch.equal(model.generate(start, 6, temperature=1.0, top_k=1), greedy)
    torch.manual_seed(7)
    a = model.generate(start, 6, temperature=1.0)
    torch.manual_seed(7)
    assert torch.equal(a, model.generate(start, 6, temperature=1.0))


@pytest.mark.parametrize("prompt", ["The quick brown fox", "农夫山泉 天然水 550ml 瓶装 " * 3])
def test_engine_trace_matches_reference_past_context(tmp_path, prompt):
    hp = book_h_params(context_length=16)
    sd = random_book_state_dict(hp, seed=11)
    path = tmp_path / "m.ckpt"
    torch.save({"model_state_dict": sd, "h_params": hp}, path)
    loaded = load(path, device="cpu")
    engine = Engine.from_loaded(loaded, SamplingSettings(temperature=0, max_new_tokens=20))
    engine.reset(prompt)
    ids = list(engine.prompt_ids)
    for step in engine.run():
        ref = torch.softmax(book_logits(sd, hp, ids)[-1], -1)
        top = torch.topk(ref, 5)
        assert [c.id for c in step.candidates] == top.indices.tolist()
        assert [c.prob for c in step.candidates] == pytest.approx(top.values.tolist(), abs=1e-6)
        assert step.chosen.id == int(ref.argmax())
        assert step.context == min(len(ids), 16)
        ids.append(step.chosen.id)
    assert engine.tokens == ids
