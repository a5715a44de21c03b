"""Why this token: every stage against plain float64 math on the reference model's logits."""

import math

import pytest
import torch

from minigpt.engine.engine import Engine
from minigpt.errors import PromptError
from minigpt.models.book import Model
from minigpt.settings import SamplingSettings
from reference import book_h_params, book_logits, random_book_state_dict

VOCAB = 400


def reference_stages(logits, T, k, p):
    """(raw, tempered, kept mask, final) over the whole vocabulary, written out plainly."""
    logits = logits.double()
    raw = torch.exp(logits - logits.max())
    raw = raw / raw.sum()
    if T == 0:
        tempered = torch.zeros_like(raw)
        tempered[int(logits.argmax())] = 1.0
    else:
        tempered = torch.exp((logits - logits.max()) / T)
        tempered = tempered / tempered.sum()
    kept = torch.ones_like(raw, dtype=torch.bool)
    if k is not None:
        kept &= logits >= logits.sort(descending=True).values[k - 1]
    if p is not None:
        base = torch.where(kept, torch.softmax(logits / (T or 1.0), -1), 0.0)
        base = base / base.sum()
        order = base.argsort(descending=True)
        mass_before = 0.0
        top_p = torch.zeros_like(kept)
        for i in order.tolist():
            if mass_before >= p:
                break
            top_p[i] = True
            mass_before += base[i].item()
        kept &= top_p
    final = tempered if T == 0 else torch.where(kept, tempered, 0.0) / tempered[kept].sum()
    return raw, tempered, kept, final


def nats(probs):
    nz = probs[probs > 0]
    return float(-(nz * nz.log()).sum())


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    hp = book_h_params(max_token_value=VOCAB, context_length=8)
    sd = random_book_state_dict(hp, seed=5, scale=0.6)
    path = tmp_path_factory.mktemp("why") / "m.ckpt"
    torch.save({"model_state_dict": sd, "h_params": hp}, path)
    return sd, hp, path


class CharTokenizer:
    """Ids 0..399 as single printable bytes or byte pairs: enough to drive the engine."""
    name = "test"

    def encode(self, text):
        return [ord(c) % VOCAB for c in text]

    def special_name(self, token_id):
        return None

    def token_bytes(self, token_id):
        return chr(token_id + 0x20).encode()

    def decode(self, ids):
        return "".join(chr(i + 0x20) for i in ids)


@pytest.fixture
def engine(book):
    sd, hp, _ = book
    model = Model(hp).eval()
    model.load_state_dict(sd)
    e = Engine(model, CharTokenizer(), SamplingSettings(temperature=1.0, max_new_tokens=20))
    e.reset("abcdefghijk")  # 11 tokens: past the context of 8
    return e


@pytest.mark.parametrize("T,k,p", [(1.0, None, None), (0.7, 5, None), (1.3, None, 0.6),
                                   (0.5, 20, 0.9), (0, None, None), (0, 3, 0.5)])
def test_every_stage_matches_plain_math(book, engine, T, k, p):
    sd, hp, _ = book
    list(engine.run(6))
    settings = SamplingSettings(temperature=T, top_k=k, top_p=p)
    for step_index in (None, 2, 6):
        position = len(engine.tokens) if step_index is None else \
            engine.steps[step_index - 1].position
        ref_logits = book_logits(sd, hp, engine.tokens[:position])[-1]
        raw, tempered, kept, final = reference_stages(ref_logits, T, k, p)
        result = engine.why(step_index, settings)
        ids = [r.id for r in result.rows]
        assert ids == ref_logits.topk(5).indices.tolist()
        assert [r.raw for r in result.rows] == pytest.approx(raw[ids].tolist(), abs=1e-5)
        assert [r.tempered for r in result.rows] == pytest.approx(tempered[ids].tolist(),
                                                                  abs=1e-5)
        assert [r.kept for r in result.rows] == kept[ids].tolist()
        assert [r.final for r in result.rows] == pytest.approx(final[ids].tolist(), abs=1e-5)
        assert result.raw_entropy == pytest.approx(nats(raw), abs=1e-5)
        assert result.entropy == pytest.approx(nats(final), abs=1e-5)
        assert result.effective_vocab == pytest.approx(math.exp(nats(final)), rel=1e-5)
        assert result.kept_count == int(kept.sum()) and result.vocab_size == VOCAB


def test_past_step_agrees_with_what_was_shown_then(engine):
    steps = list(engine.run(5))
    for step in steps:
        rows = engine.why(step.index).rows
        assert [r.id for r in rows] == [c.id for c in step.candidates]
        assert [r.tempered for r in rows] == pytest.approx([c.prob for c in step.candidates],
                                                           abs=1e-5)


def test_new_knobs_redraw_from_cached_logits_without_the_model(engine, monkeypatch):
    list(engine.run(4))
    calls = []
    real = engine.decoder.last_logits
    monkeypatch.setattr(engine.decoder, "last_logits",
                        lambda ids, progress=None: calls.append(1) or real(ids, progress))
    engine.why(2)
    engine.why(None)
    assert len(calls) == 2  # each step's logits computed once
    for T in (0.2, 1.0, 3.0, 0):
        for k in (None, 2):
            engine.why(2, SamplingSettings(temperature=T, top_k=k, top_p=0.8))
            engine.why(None, SamplingSettings(temperature=T, top_k=k))
    assert len(calls) == 2
    engine.step()  # sampled from the cached next-token logits: no model run
    engine.why(2, SamplingSettings(temperature=0.4))
    assert len(calls) == 2
    engine.why(None)  # the token after it is new
    assert len(calls) == 3


def test_undo_forgets_logits_that_no_longer_apply(engine):
    list(engine.run(4))
    before = engine.why(4).rows
    engine.undo()
    engine.undo()
    engine.step(before[-1].id)  # a different token at step 3
    engine.step()
    after = engine.why(4).rows
    assert [r.raw for r in after] != [r.raw for r in before]
    assert [r.id for r in engine.why(4).rows] == [c.id for c in engine.steps[3].candidates]


def test_repetition_penalty_comes_before_temperature_and_not_into_raw(book, engine):
    sd, hp, _ = book
    logits = book_logits(sd, hp, engine.tokens)[-1]
    seen = torch.tensor(sorted(set(engine.tokens[-hp["context_length"]:])))
    penalised = logits.clone()
    penalised[seen] = torch.where(logits[seen] > 0, logits[seen] / 3, logits[seen] * 3)
    raw = torch.softmax(logits, -1)
    _, tempered, _, _ = reference_stages(penalised, 0.8, None, None)
    result = engine.why(None, SamplingSettings(temperature=0.8, repetition_penalty=3.0))
    plain = engine.why(None, SamplingSettings(temperature=0.8))
    ids = [r.id for r in result.rows]
    assert ids == penalised.topk(5).indices.tolist()
    assert [r.tempered for r in result.rows] == pytest.approx(tempered[ids].tolist(), abs=1e-5)
    assert [r.raw for r in result.rows] == pytest.approx(raw[ids].tolist(), abs=1e-5)
    assert result.rows != plain.rows


def test_no_step_and_no_prompt_are_clear_errors(engine):
    with pytest.raises(PromptError, match="no step 3"):
        engine.why(3)
    fresh = Engine(engine.model, engine.tokenizer)
    with pytest.raises(PromptError):
        fresh.why()
