"""Engine behaviour: step, run n, take, undo, cancel, seeds, knobs, bad input."""

import threading

import pytest
import torch

from minigpt.engine.engine import Engine
from minigpt.errors import GenerationError, PromptError
from minigpt.settings import SamplingSettings


@pytest.fixture
def engine(tiny_loaded):
    e = Engine.from_loaded(tiny_loaded, SamplingSettings(temperature=0, max_new_tokens=10))
    e.reset("农夫山泉 ")
    return e


def test_run_yields_max_new_tokens_steps(engine):
    steps = list(engine)
    assert [s.index for s in steps] == list(range(1, 11))
    assert engine.remaining == 0 and list(engine.run()) == []
    assert engine.tokens == engine.prompt_ids + [s.chosen.id for s in steps]


def test_run_n_and_step(engine):
    assert len(list(engine.run(3))) == 3
    step = engine.step()
    assert step.index == 4 and step.position == len(engine.tokens) - 1


def test_peek_shows_the_next_steps_candidates(engine):
    preview = engine.peek()
    step = engine.step()
    assert preview.candidates == step.candidates and preview.index == step.index == 1
    assert step.chosen.id == preview.candidates[0].id


def test_take_given_candidate_instead_of_sampling(engine):
    preview = engine.peek()
    third = preview.candidates[2]
    step = engine.step(third.id)
    assert step.forced and step.chosen.id == third.id and step.chosen_rank == 3
    assert step.chosen.prob == pytest.approx(third.prob)
    assert engine.tokens[-1] == third.id


def test_undo_restores_candidates_text_and_cache(engine):
    steps = list(engine.run(6))
    text_before = engine.completion
    undone = engine.undo()
    assert undone == steps[-1]
    assert engine.completion == "".join(s.text for s in steps[:-1])
    assert engine.peek().candidates == undone.candidates
    again = engine.step()
    assert again.chosen.id == undone.chosen.id  # greedy: same choice after undo
    assert engine.completion == text_before
    while engine.undo():
        pass
    assert engine.tokens == engine.prompt_ids and engine.undo() is None


def test_cancel_stops_before_next_token(engine):
    engine.set_settings(engine.settings.with_(max_new_tokens=1000))
    seen = []
    for step in engine.run():
        seen.append(step)
        if len(seen) == 3:
            engine.cancel()
    assert len(seen) == 3


def test_cancel_from_another_thread(tiny_loaded):
    engine = Engine.from_loaded(tiny_loaded, SamplingSettings(max_new_tokens=100_000))
    engine.reset("hi")
    started = threading.Event()
    count = []

    def drive():
        for _ in engine.run():
            count.append(1)
            started.set()

    worker = threading.Thread(target=drive)
    worker.start()
    started.wait(10)
    engine.cancel()
    worker.join(10)
    assert not worker.is_alive() and 0 < len(count) < 100_000


def test_seeded_sampling_reproducible(tiny_loaded):
    def tokens(seed):
        e = Engine.from_loaded(tiny_loaded, SamplingSettings(temperature=1.0, seed=seed,
                                                             max_new_tokens=15))
        e.reset("abc")
        return [s.chosen.id for s in e]
    assert tokens(3) == tokens(3) != tokens(4)


def test_top_k_marks_removed_candidates(engine):
    engine.set_settings(engine.settings.with_(temperature=1.0, top_k=2))
    step = engine.step()
    assert [c.kept for c in step.candidates] == [True, True, False, False, False]
    assert step.chosen.id in {c.id for c in step.candidates[:2]}


def test_candidates_are_softmax_over_temperature(engine):
    engine.set_settings(engine.settings.with_(temperature=2.0))
    with torch.no_grad():
        logits = engine.model(torch.tensor([engine.tokens[-16:]]))[0][0, -1]
    probs = torch.softmax(logits / 2.0, -1)
    preview = engine.peek()
    assert [c.prob for c in preview.candidates] == pytest.approx(
        torch.topk(probs, 5).values.tolist(), abs=1e-6)


def test_reset_rejects_bad_prompts_and_keeps_state(engine):
    list(engine.run(2))
    tokens = list(engine.tokens)
    with pytest.raises(PromptError):
        engine.reset("")
    assert engine.tokens == tokens


def test_special_token_text_is_a_prompt_like_any_other(engine):
    engine.reset("<|endoftext|>")
    assert 100257 not in engine.prompt_ids and engine.step()


def test_take_out_of_range_token(engine):
    with pytest.raises(PromptError):
        engine.step(10**9)


def test_nan_weights_give_a_clear_error(tiny_loaded):
    import copy
    model = copy.deepcopy(tiny_loaded.model)
    with torch.no_grad():
        model.model_out_linear_layer.bias[5] = float("nan")
    e = Engine(model, tiny_loaded.tokenizer, SamplingSettings(temperature=1.0))
    e.reset("hi")
    with pytest.raises(GenerationError, match="NaN/Inf logits at step 1"):
        e.step()


@pytest.mark.parametrize("pair", [(7, 300), (300, 7), (41, 42)])
def test_greedy_tie_goes_to_the_lowest_id_like_the_book(tiny_loaded, pair):
    """Two output rows made identical and far ahead of the rest: the logits tie exactly,
    and the book's argmax takes the lower id whatever order topk lists them in."""
    import copy
    model = copy.deepcopy(tiny_loaded.model)
    low, high = sorted(pair)
    with torch.no_grad():
        out = model.model_out_linear_layer
        out.weight[pair[1]] = out.weight[pair[0]]
        out.bias[pair[0]] = out.bias[pair[1]] = 1e4
    e = Engine(model, tiny_loaded.tokenizer, SamplingSettings(temperature=0))
    e.reset("hi")
    step = e.step()
    assert {c.id for c in step.candidates[:2]} == {low, high}
    assert step.chosen.id == low


def test_ids_without_bytes_show_a_placeholder_everywhere(tiny_loaded):
    """nanoGPT's padding rows, special ids, a smaller vocabulary: never empty text."""
    from minigpt.engine.engine import Engine
    from minigpt.cli.render import candidate_json

    class Gappy:
        name, n_vocab = "gappy", tiny_loaded.tokenizer.n_vocab

        def encode(self, text):
            return tiny_loaded.tokenizer.encode(text)

        def special_name(self, token_id):
            return None

        def token_bytes(self, token_id):
            return b"" if token_id == 77 else tiny_loaded.tokenizer.token_bytes(token_id)

    engine = Engine(tiny_loaded.model, Gappy())
    engine.reset("hello")
    step = engine.step(77)
    assert step.text == "‹id 77›" and step.chosen.text == "‹id 77›" and step.chosen.special
    assert candidate_json(step.chosen)["special"] is True
    assert engine.completion == "‹id 77›" and engine.display(77) == "‹id 77›"
