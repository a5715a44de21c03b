"""Character-complete candidates against a reference greedy lookahead on the book's math."""

import pytest
import torch

from minigpt.models.checkpoint import load
from minigpt.engine.engine import Engine
from minigpt.engine.lookahead import complete_candidates
from minigpt.settings import SamplingSettings
from minigpt.text.tokenizer import cl100k
from reference import book_logits, random_book_state_dict


def reference_completion(sd, hp, context, token_id, prob, pending, temperature, tokenizer):
    """Append the most probable token until the bytes decode; at most three."""
    ids, joint = [*context, token_id], prob
    data = pending + tokenizer.token_bytes(token_id)
    for _ in range(4):
        try:
            return data.decode("utf-8"), joint, ids[len(context) + 1:]
        except UnicodeDecodeError as err:
            if err.reason != "unexpected end of data":
                return data.decode("utf-8", errors="replace"), joint, ids[len(context) + 1:]
        if len(ids) - len(context) - 1 == 3:
            return None, joint, ids[len(context) + 1:]
        logits = book_logits(sd, hp, ids)[-1]
        probs = torch.softmax(logits / (temperature or 1.0), -1)
        best = int(probs.argmax())
        ids.append(best)
        joint *= float(probs[best])
        data += tokenizer.token_bytes(best)


def partial_ids(tokenizer, text):
    return [i for i in tokenizer.encode(text)
            if not _decodes(tokenizer.token_bytes(i))]


def _decodes(data):
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


@pytest.mark.parametrize("temperature", [0, 0.7, 1.5])
def test_matches_the_reference_lookahead(tiny_ckpt, tiny_hp, temperature):
    loaded = load(tiny_ckpt, device="cpu")
    sd = random_book_state_dict(tiny_hp)
    tok = cl100k()
    candidates = [(i, 0.1 * (n + 1)) for n, i in
                  enumerate(partial_ids(tok, "农夫山泉矿泉水饮料"))][:5]
    candidates.append((tok.encode(" water")[0], 0.05))  # complete already: no lookahead
    assert len(candidates) >= 4
    context = tok.encode("one two three four five six seven eight nine ten eleven twelve "
                         "thirteen fourteen fifteen sixteen seventeen")
    assert len(context) > tiny_hp["context_length"]  # the lookahead windows crop like the book
    state = (b"", 0)
    got = complete_candidates(loaded.model, context, candidates, tok.token_bytes, state,
                              lambda ids: ids[-tiny_hp["context_length"]:], temperature)
    for completion, (token_id, prob) in zip(got, candidates):
        text, joint, look = reference_completion(sd, tiny_hp, context, token_id, prob, b"",
                                                 temperature, tok)
        assert completion.id == token_id
        assert list(completion.lookahead) == look
        assert completion.text == text
        assert completion.joint == pytest.approx(joint, rel=1e-4)
    assert got[-1].lookahead == () and got[-1].text == " water" and got[-1].joint == 0.05


def test_pending_bytes_of_an_earlier_token_are_part_of_the_character(tiny_ckpt):
    """'农' is two cl100k tokens, e5 86 | 9c: with e5 86 pending, 9c completes it at once."""
    from minigpt.text.tokenizer import StreamDecoder
    loaded = load(tiny_ckpt, device="cpu")
    tok = cl100k()
    head, tail = tok.encode("农")
    assert tok.token_bytes(head) == "农".encode()[:2]
    stream = StreamDecoder()
    assert stream.feed(tok.token_bytes(head)) == ""
    got = complete_candidates(loaded.model, tok.encode("hello"), [(tail, 0.5)],
                              tok.token_bytes, stream.state(), lambda ids: ids[-16:], 1.0)
    assert (got[0].text, got[0].lookahead, got[0].joint) == ("农", (), 0.5)


def test_engine_batches_pending_candidates_in_one_pass_per_lookahead_token(tiny_loaded,
                                                                          monkeypatch):
    engine = Engine.from_loaded(tiny_loaded, SamplingSettings(temperature=1.0))
    engine.reset("农夫山泉")
    passes = []
    hook = engine.model.register_forward_hook(lambda m, a, out: passes.append(a[0].shape))
    try:
        preview = engine.peek()
        completions = engine.complete_candidates()
    finally:
        hook.remove()
    partial = [c for c in preview.candidates if c.partial]
    assert [c.id for c in completions] == [c.id for c in partial]
    assert len(passes) <= 3 and all(shape[0] <= len(partial) for shape in passes)


def test_shipped_model_completes_real_characters():
    """End to end: after a brand, the shipped model's most likely byte-piece candidate
    completes to a real Chinese character; U+FFFD only marks unlikely pieces that cannot
    continue the bytes before them."""
    from minigpt.paths import default_checkpoint
    loaded = load(default_checkpoint(), device="cpu")
    engine = Engine.from_loaded(loaded, SamplingSettings(temperature=1.0))
    real = checked = 0
    for prompt in ("农夫山泉 ", "可口可乐 ", "奥利奥 ", "蒙牛 "):
        engine.reset(prompt)
        for _ in range(3):
            preview = engine.peek()
            completions = {c.id: c for c in engine.complete_candidates()}
            partial = [c for c in preview.candidates if c.partial and c.prob >= 0.05]
            if partial:
                best, checked = completions[partial[0].id], checked + 1
                assert best.text is not None and "\ufffd" not in best.text
                assert any("\u4e00" <= ch <= "\u9fff" for ch in best.text)
                assert best.joint <= partial[0].prob
            for c in completions.values():
                real += c.text is not None and "\ufffd" not in c.text
                if c.text is not None and "\ufffd" in c.text:
                    assert c.joint < 0.02
            engine.step(preview.candidates[0].id)
    assert real >= 10 and checked >= 6
