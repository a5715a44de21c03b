"""CUDA-graph decoding: the fixed-shape step equals the eager path at every position,
the graph wrapper keeps the cache consistent through slides, undo and picks, and on a
GPU the captured graphs give the CPU reference's tokens and probabilities."""

import pytest
import torch

from minigpt.decode.cudagraphs import GraphedDecoder
from minigpt.decode.decoder import BookDecoder
from minigpt.engine.engine import Engine
from minigpt.errors import GenerationError
from minigpt.models.book import Model
from minigpt.models.nanogpt import NanoGPT
from minigpt.settings import SamplingSettings
from reference import book_h_params, random_book_state_dict
from reference_gpt2 import random_nanogpt

class ToyTokenizer:
    """Characters as ids under the model's vocabulary; each id one byte."""

    name = "t"

    def __init__(self, vocab: int):
        self.n_vocab = vocab

    def encode(self, text):
        return [ord(c) % min(self.n_vocab, 250) for c in text]

    def special_name(self, i):
        return None

    def token_bytes(self, i):
        return bytes([i % 128])


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def book_model(device="cpu", **hp):
    hp = book_h_params(**{"max_token_value": 300, **hp})
    model = Model(hp)
    model.load_state_dict(random_book_state_dict(hp))
    return model.to(device).eval()


def nano_model(device="cpu"):
    args = dict(n_layer=2, n_head=2, n_embd=32, block_size=12, bias=True, vocab_size=300)
    model = NanoGPT({"d_model": 32, "num_blocks": 2, "num_heads": 2, "context_length": 12,
                     "max_token_value": 300, "bias": True})
    sd = {k.removeprefix("_orig_mod."): v for k, v in random_nanogpt(args)["model"].items()}
    model.load_state_dict(sd, strict=False)
    return model.to(device).eval()


@pytest.mark.parametrize("make", [book_model, nano_model], ids=["book", "nanogpt"])
def test_fixed_shape_step_equals_the_eager_path_at_every_position(make):
    torch.manual_seed(0)
    model = make()
    eager, static = (model.make_decoder() if hasattr(model, "make_decoder")
                     else BookDecoder(model) for _ in range(2))
    ids = torch.randint(0, 250, (eager.context_length,)).tolist()
    with torch.inference_mode():
        static.last_logits(ids[:1])
        for n in range(2, len(ids) + 1):
            expected = eager.last_logits(ids[:n])
            got = static.step_at(torch.tensor([ids[n - 1]]), torch.tensor([n - 1]))
            assert torch.allclose(got, expected, atol=1e-5), n


@pytest.mark.parametrize("make", [book_model, nano_model], ids=["book", "nanogpt"])
def test_attention_gets_what_fused_kernels_take(make, monkeypatch):
    """Every attention call, stepping and prefilling, gets 4-D inputs, and a step's mask is
    an additive one of the query's dtype: 3-D inputs run the unfused math path (on cuda
    about seven kernels a layer instead of one, inside every replay), and a boolean mask is
    converted again in every layer."""
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        seen.append((q.dim(), k.dim(), None if attn_mask is None else attn_mask.dtype))
        return sdpa(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    model = make()
    decoder = model.make_decoder() if hasattr(model, "make_decoder") else BookDecoder(model)
    with torch.inference_mode():
        decoder.last_logits([1, 2, 3])  # prefill: causal
        decoder.last_logits([1, 2, 3, 4, 5])  # two new positions after cached ones: masked
        prefill = len(seen)
        decoder.step_at(torch.tensor([6]), torch.tensor([5]))
    assert prefill and len(seen) > prefill
    assert all(q == k == 4 for q, k, _ in seen)
    assert {mask for _, _, mask in seen[prefill:]} == {torch.float32}


class ReplayOnCpu(GraphedDecoder):
    """The wrapper's dispatch and bookkeeping, with each 'graph' run eagerly: what the
    replay computes on a GPU, checked on any machine."""

    def _capture(self, kind):
        class Graph:
            def replay(inner):
                out.copy_(self._run(kind))

        out = self._run(kind).clone()
        self.graphs[kind] = (Graph(), out)
        return self.graphs[kind]


def run_both(model, settings, prompt: str) -> list[Engine]:
    """The same run on the eager decoder and on 'graphs' replayed eagerly."""
    toks = ToyTokenizer(model.max_token_value)
    engines = [Engine(model, toks, settings, decoder=decoder)
               for decoder in (BookDecoder(model), ReplayOnCpu(BookDecoder(model)))]
    for engine in engines:
        engine.reset(prompt)
        list(engine.run())
    return engines


@pytest.mark.parametrize("temperature", [1.0, 0.0], ids=["sampled", "greedy"])
@pytest.mark.parametrize("make", [book_model, nano_model], ids=["book", "nanogpt"])
def test_graph_dispatch_matches_eager_through_slides_undo_and_picks(make, temperature):
    """Greedy steps read softmax, top-5 and argmax from the graph itself; the same
    candidates and probabilities as the eager engine's."""
    model = make()
    base = model.make_decoder() if hasattr(model, "make_decoder") else BookDecoder(model)
    settings = SamplingSettings(temperature=temperature, seed=3, max_new_tokens=40)
    vocab = model.max_token_value

    eager = Engine(model, ToyTokenizer(vocab), settings, decoder=base)
    graphed_decoder = ReplayOnCpu(model.make_decoder() if hasattr(model, "make_decoder")
                                  else BookDecoder(model))
    graphed = Engine(model, ToyTokenizer(vocab), settings, decoder=graphed_decoder)
    for engine in (eager, graphed):
        engine.reset("abcdefgh")
        list(engine.run(30))  # well past the window: slides
        engine.undo()
        engine.undo()
        engine.step(engine.peek().candidates[2].id)
        list(engine.run(5))
    assert [s.chosen.id for s in graphed.steps] == [s.chosen.id for s in eager.steps]
    for a, b in zip(graphed.steps, eager.steps):
        assert abs(a.chosen.prob - b.chosen.prob) < 1e-5
        assert [c.id for c in a.candidates] == [c.id for c in b.candidates]
        assert max(abs(x.prob - y.prob) for x, y in zip(a.candidates, b.candidates)) < 1e-6
        assert a.chosen_rank == b.chosen_rank and a.text == b.text
    served = {"step+greedy5", "window+greedy5"} if temperature == 0 else {"step", "window"}
    assert graphed_decoder.replays > 20 and served <= set(graphed_decoder.graphs)
    if temperature == 0:  # greedy runs queue each next step before reading the last
        assert graphed_decoder.served_ahead > 20


@pytest.mark.parametrize("make", [book_model, nano_model], ids=["book", "nanogpt"])
def test_an_uninterrupted_greedy_run_replays_once_a_step(make):
    """Each step but the first (the prompt's prefill runs eagerly) is one replay, and all
    but two were queued while the host read the step before: the second step (the first
    ran eagerly) and the first slide (the step before it had the other shape). None is
    wasted where the window fills up."""
    model = make()
    decoder = ReplayOnCpu(model.make_decoder() if hasattr(model, "make_decoder")
                          else BookDecoder(model))
    engine = Engine(model, ToyTokenizer(model.max_token_value),
                    SamplingSettings(temperature=0, max_new_tokens=40), decoder=decoder)
    engine.reset("abcd")
    steps = list(engine.run(30))  # the window (12 or 16) fills and slides
    assert len(steps) == 30
    assert decoder.replays == 29 and decoder.served_ahead == 27


def stop_after(engine, steps: int, n: int) -> None:
    """A run of ``n`` stopped after ``steps`` of them, as the stop key does: the last
    step taken had already queued the next."""
    for step in engine.run(n):
        if step.index == steps:
            engine.cancel()


@pytest.mark.parametrize("stop_at", [3, 14, 26], ids=["in-window", "window-fills", "sliding"])
@pytest.mark.parametrize("make", [book_model, nano_model], ids=["book", "nanogpt"])
def test_a_queued_step_nobody_takes_leaves_the_cache_exact(make, stop_at):
    """A greedy run queues step n + 1 before step n is read; stopped there, then a pick,
    an undo, a peek or a new run must see the cache the guess left, not a stale one
    (past the window, the guess re-wrote every position)."""
    model = make()
    settings = SamplingSettings(temperature=0, max_new_tokens=60)
    toks = ToyTokenizer(model.max_token_value)
    fresh = (lambda: model.make_decoder()) if hasattr(model, "make_decoder") \
        else (lambda: BookDecoder(model))
    eager = Engine(model, toks, settings, decoder=fresh())
    graphed_decoder = ReplayOnCpu(fresh())
    graphed = Engine(model, toks, settings, decoder=graphed_decoder)
    seen = []
    for engine in (eager, graphed):
        engine.reset("abcd")
        stop_after(engine, stop_at, 40)
        queued = engine is graphed and graphed_decoder.ahead is not None
        engine.undo()
        first = engine.peek()
        engine.step(first.candidates[1].id)  # not the token the graph guessed
        stop_after(engine, 3, 10)
        engine.undo()
        stop_after(engine, 2, 10)
        seen.append((engine.tokens, [c.prob for s in engine.steps for c in s.candidates],
                     [c.prob for c in first.candidates]))
        if engine is graphed:
            assert queued, "the stopped run had queued its next step"
    (eager_tokens, eager_probs, eager_peek), (tokens, probs, peek) = seen
    assert tokens == eager_tokens
    assert max(abs(a - b) for a, b in zip(probs + peek, eager_probs + eager_peek)) < 1e-6


@cuda
@pytest.mark.parametrize("make", [book_model, nano_model], ids=["book", "nanogpt"])
def test_cuda_graphs_give_the_cpu_references_tokens(make):
    """Same tokens as the CPU reference, probabilities within 1e-5, past the window."""
    torch.manual_seed(0)
    cpu_model = make()
    gpu_model = make().to("cuda")
    gpu_model.load_state_dict(cpu_model.state_dict())
    settings = SamplingSettings(temperature=0, max_new_tokens=40)

    toks = ToyTokenizer(cpu_model.max_token_value)
    reference, engine = Engine(cpu_model, toks, settings), Engine(gpu_model, toks, settings)
    assert isinstance(engine.decoder, GraphedDecoder)
    for e in (reference, engine):
        e.reset("abcdefgh")
        list(e.run())
    assert [s.chosen.id for s in engine.steps] == [s.chosen.id for s in reference.steps]
    for a, b in zip(engine.steps, reference.steps):
        assert [c.id for c in a.candidates] == [c.id for c in b.candidates]
        assert max(abs(x.prob - y.prob) for x, y in zip(a.candidates, b.candidates)) < 1e-5
    assert engine.decoder.replays >= 25 and not engine.notice


@cuda
def test_a_failed_capture_falls_back_with_a_notice(monkeypatch):
    model = book_model("cuda")

    def refuse(*a, **k):
        raise RuntimeError("capture not supported")

    monkeypatch.setattr(torch.cuda, "graph", refuse)
    engine = Engine(model, type("T", (), {"name": "t", "n_vocab": 300,
                                          "encode": lambda s, t: [1, 2, 3],
                                          "token_bytes": lambda s, i: b"x"})(),
                    SamplingSettings(temperature=0, max_new_tokens=5))
    engine.reset("abc")
    steps = list(engine.run())
    assert len(steps) == 5 and "CUDA graphs off" in engine.notice


@cuda
@pytest.mark.parametrize("make", [book_model, nano_model], ids=["book", "nanogpt"])
def test_graphed_logits_back_to_back_without_a_sync_stay_exact(make):
    """``last_logits`` returns without a host sync, so a caller may ask for window after
    window (``bench_dtype``'s teacher forcing) while the GPU is still behind: each replay
    must still get its own token and position, not a later call's, from the pinned
    buffer they are copied from."""
    torch.manual_seed(0)
    model = make("cuda")
    fresh = (lambda: model.make_decoder()) if hasattr(model, "make_decoder") \
        else (lambda: BookDecoder(model))
    eager, graphed = fresh(), GraphedDecoder(fresh())
    ids = torch.randint(0, 250, (eager.context_length,)).tolist()
    with torch.inference_mode():
        expected = [eager.last_logits(ids[:n]).cpu() for n in range(3, len(ids) + 1)]
        got = [graphed.last_logits(ids[:n]) for n in (3, 4)]  # prefill, then the capture
        torch.cuda._sleep(100_000_000)  # the GPU falls behind every call that follows
        got += [graphed.last_logits(ids[:n]) for n in range(5, len(ids) + 1)]
        torch.cuda.synchronize()
    assert graphed.replays >= len(ids) - 4 and not graphed.notice
    for n, (a, b) in enumerate(zip(got, expected), 3):
        assert torch.allclose(a.cpu(), b, atol=1e-5), n


@pytest.mark.parametrize("knobs", [dict(top_k=2), dict(top_p=0.3), dict(top_k=40)],
                         ids=["top_k 2", "top_p 0.3", "top_k 40"])
def test_greedy_with_filters_marks_the_same_candidates_kept(knobs):
    """Greedy ignores top-k/top-p for the choice, but the table still marks which of the
    five the filters would drop; the graph's greedy rows (all kept) serve only where the
    filters keep all five, so both paths mark the same rows."""
    eager, graphed = run_both(book_model(), SamplingSettings(temperature=0, max_new_tokens=20,
                                                             **knobs), "abcd")
    kept = [[[c.kept for c in s.candidates] for s in e.steps] for e in (eager, graphed)]
    assert kept[0] == kept[1]
    assert [s.chosen.id for s in graphed.steps] == [s.chosen.id for s in eager.steps]
    if knobs.get("top_k") == 40:  # keeps all five: the graph serves
        assert graphed.decoder.replays > 10


def test_nan_logits_mid_run_are_one_error_not_a_bad_index():
    """NaN logits choose no token (the graph's id reads V); the step queued behind them
    must still read a real embedding row — on a GPU an index past the table is a device
    assert that loses the CUDA context — and the engine reports the NaN as it does eagerly."""
    model = book_model()
    engine = Engine(model, ToyTokenizer(model.max_token_value),
                    SamplingSettings(temperature=0, max_new_tokens=20),
                    decoder=ReplayOnCpu(BookDecoder(model)))
    engine.reset("abcd")
    with pytest.raises(GenerationError, match="NaN/Inf logits"):
        for step in engine.run():
            if step.index == 4:
                with torch.no_grad():
                    model.model_out_linear_layer.bias.fill_(float("nan"))
    assert 4 <= len(engine.steps) < 8


def test_turning_attention_on_drops_a_queued_step():
    """The attention strip keeps each step's rows from the step's own pass; a step queued
    before it was turned on has none, so it is dropped and the step runs again."""
    model = book_model()
    decoder = ReplayOnCpu(BookDecoder(model))
    engine = Engine(model, ToyTokenizer(model.max_token_value),
                    SamplingSettings(temperature=0, max_new_tokens=40), decoder=decoder)
    engine.reset("abcd")
    stop_after(engine, 3, 10)
    assert decoder.ahead is not None
    engine.capture_attention = True
    served = decoder.served_ahead
    steps = list(engine.run(4))
    assert decoder.served_ahead == served
    assert all(step.position in engine._attention for step in steps)


def test_greedy_steps_on_a_flat_distribution_still_take_the_lowest_id():
    """All logits equal (a zeroed output layer): the graph's top-5 cannot tell the
    argmax, so the step takes the long way, and chooses what the eager engine does."""
    model = book_model()
    with torch.no_grad():
        model.model_out_linear_layer.weight.zero_()
        model.model_out_linear_layer.bias.zero_()
    eager, graphed = run_both(model, SamplingSettings(temperature=0, max_new_tokens=6), "abc")
    assert [s.chosen.id for s in graphed.steps] == [s.chosen.id for s in eager.steps] == [0] * 6

