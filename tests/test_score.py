"""Score my text: per-token probability, rank, surprisal and perplexity against the reference."""

import json
import math

import pytest
import torch

from minigpt.models.checkpoint import load
from minigpt.cli.main import main
from minigpt.errors import PromptError
from minigpt.engine.score import score_text
from reference import book_logits, random_book_state_dict

TEXT = ("农夫山泉 天然水 550ml 瓶装\n可口可乐 零度 330ml 罐装\n奥利奥 夹心饼干 原味 "
        "97g 袋装\nThe quick brown fox jumps over the lazy dog.")


def reference_score(sd, hp, ids):
    """Token j ≥ 1 seen from its window's start, or from the whole previous window when j
    opens a window; log-prob and rank from the book's math in float64."""
    C = hp["context_length"]
    rows = []
    for j in range(1, len(ids)):
        context = ids[j - C:j] if j % C == 0 else ids[(j // C) * C:j]
        logits = book_logits(sd, hp, context)[-1]
        log_prob = float(torch.log_softmax(logits, -1)[ids[j]])
        rank = int((logits > logits[ids[j]]).sum()) + 1
        rows.append((log_prob, rank, len(context)))
    return rows


@pytest.fixture(scope="module")
def scored(tiny_ckpt, tiny_hp):
    loaded = load(tiny_ckpt, device="cpu")
    sd = random_book_state_dict(tiny_hp)
    ids = loaded.tokenizer.encode(TEXT)
    return loaded, sd, ids


def test_every_token_matches_the_reference(scored, tiny_hp):
    loaded, sd, ids = scored
    C = tiny_hp["context_length"]
    assert len(ids) > 3 * C  # several windows, the last one short
    result = score_text(loaded.model, loaded.tokenizer, TEXT, loaded.vocab_size, C)
    ref = reference_score(sd, tiny_hp, ids)
    assert [t.index for t in result.tokens] == list(range(1, len(ids)))
    assert [t.id for t in result.tokens] == ids[1:]
    assert [t.log_prob for t in result.tokens] == pytest.approx([r[0] for r in ref], abs=1e-4)
    assert [t.rank for t in result.tokens] == [r[1] for r in ref]
    assert [t.context for t in result.tokens] == [r[2] for r in ref]
    mean_nll = -sum(r[0] for r in ref) / len(ref)
    assert result.perplexity == pytest.approx(math.exp(mean_nll), rel=1e-4)
    assert result.mean_surprisal_bits == pytest.approx(mean_nll / math.log(2), rel=1e-4)
    assert all(t.surprisal_bits == pytest.approx(-math.log2(t.prob)) for t in result.tokens)
    assert result.windows == math.ceil(len(ids) / C)


def test_one_forward_pass_per_window(scored, tiny_hp):
    loaded, _, ids = scored
    calls = []
    hook = loaded.model.register_forward_hook(lambda m, args, out: calls.append(args[0].shape))
    try:
        result = score_text(loaded.model, loaded.tokenizer, TEXT, loaded.vocab_size,
                            tiny_hp["context_length"])
    finally:
        hook.remove()
    assert len(calls) == result.windows
    assert all(shape[1] <= tiny_hp["context_length"] for shape in calls)


def test_partial_pieces_are_escapes_never_replacement_characters(scored, tiny_hp):
    loaded, _, _ = scored
    result = score_text(loaded.model, loaded.tokenizer, "农夫山泉", loaded.vocab_size,
                        tiny_hp["context_length"])
    assert any(t.partial and t.text.startswith("‹") for t in result.tokens)
    assert all("\ufffd" not in t.text for t in result.tokens)


@pytest.mark.parametrize("text,message", [("", "nothing to score"),
                                          ("a", "at least two tokens")])
def test_nothing_to_score_is_a_clear_error(scored, tiny_hp, text, message):
    loaded, _, _ = scored
    with pytest.raises(PromptError, match=message):
        score_text(loaded.model, loaded.tokenizer, text, loaded.vocab_size,
                   tiny_hp["context_length"])


def test_tokens_outside_the_vocabulary_are_named(tmp_path):
    from conftest import write_book_checkpoint
    from reference import book_h_params
    path = write_book_checkpoint(tmp_path / "small.ckpt", book_h_params(max_token_value=1000))
    loaded = load(path, device="cpu")
    with pytest.raises(PromptError, match="outside this model's vocabulary of 1000"):
        score_text(loaded.model, loaded.tokenizer, "农夫山泉 天然水", loaded.vocab_size, 16)


def test_cli_json_and_table(capsys, tiny_ckpt, tmp_path):
    text_file = tmp_path / "t.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    assert main(["score", str(tiny_ckpt), "--file", str(text_file), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tokens_scored"] == len(data["tokens"]) > 40
    assert data["perplexity"] == pytest.approx(
        math.exp(-sum(t["log_prob"] for t in data["tokens"]) / len(data["tokens"])))
    assert {"index", "id", "text", "prob", "rank", "surprisal_bits", "context"} <= \
        set(data["tokens"][0])
    assert main(["score", str(tiny_ckpt), "--text", "hello world"]) == 0
    out = capsys.readouterr().out
    assert "perplexity" in out and "' world'" in out


@pytest.mark.parametrize("args,message", [
    (["--text", "a"], "at least two tokens"),
    (["--file", "/no/such/file"], "/no/such/file: no such file"),
    ([], "one of the arguments --text --file --messages is required"),
])
def test_cli_errors_are_one_line(capsys, tiny_ckpt, args, message):
    assert main(["score", str(tiny_ckpt), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def reference_exact(sd, hp, ids):
    """Every token from the last context_length tokens before it (the book's crop)."""
    rows = []
    for j in range(1, len(ids)):
        logits = book_logits(sd, hp, ids[:j])[-1]  # book_logits crops to the last window
        rows.append((float(torch.log_softmax(logits, -1)[ids[j]]),
                     int((logits > logits[ids[j]]).sum()) + 1,
                     min(j, hp["context_length"])))
    return rows


def test_exact_scoring_matches_the_books_crop_for_every_token(scored, tiny_hp):
    loaded, sd, ids = scored
    C = tiny_hp["context_length"]
    calls = []
    hook = loaded.model.register_forward_hook(lambda m, a, out: calls.append(a[0].shape))
    try:
        result = score_text(loaded.model, loaded.tokenizer, TEXT, loaded.vocab_size, C,
                            exact=True)
    finally:
        hook.remove()
    ref = reference_exact(sd, tiny_hp, ids)
    assert [t.log_prob for t in result.tokens] == pytest.approx([r[0] for r in ref], abs=1e-4)
    assert [t.rank for t in result.tokens] == [r[1] for r in ref]
    assert [t.context for t in result.tokens] == [r[2] for r in ref]
    assert result.exact and result.windows == 1 + math.ceil((len(ids) - C) / 32)
    assert len(calls) == 1  # the first window; the rest go through last_logits in batches
    plain = score_text(loaded.model, loaded.tokenizer, TEXT, loaded.vocab_size, C)
    # the two agree on the first window and on every window's first token
    for a, b in zip(plain.tokens, result.tokens):
        if a.index < C or a.index % C == 0:
            assert a.log_prob == pytest.approx(b.log_prob, abs=1e-4)


def test_exact_matches_what_the_engine_reports(tiny_loaded, tiny_hp):
    from minigpt.engine.engine import Engine
    from minigpt.settings import SamplingSettings
    text = "one two three four five six seven eight nine ten eleven twelve thirteen"
    ids = tiny_loaded.tokenizer.encode(text)
    result = score_text(tiny_loaded.model, tiny_loaded.tokenizer, text, tiny_loaded.vocab_size,
                        tiny_hp["context_length"], exact=True)
    engine = Engine.from_loaded(tiny_loaded, SamplingSettings(temperature=1.0))
    engine.reset(tiny_loaded.tokenizer.decode(ids[:1]))
    for token in result.tokens:  # taking the text's own tokens, the engine reports each
        step = engine.step(token.id)
        assert step.chosen.prob == pytest.approx(token.prob, rel=1e-4)


def test_cli_exact_flag(capsys, tiny_ckpt):
    assert main(["score", str(tiny_ckpt), "--text", TEXT, "--exact", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["exact"] is True and data["tokens_scored"] > 40


def test_trace_score_and_why_agree_on_every_probability(tiny_loaded):
    """The same token in the same window: the probability the engine reports when it
    takes it, `score --exact`, and the why panel's raw column agree within 1e-6."""
    from minigpt.engine.engine import Engine
    from minigpt.settings import SamplingSettings

    text = "one two three four five six seven eight nine ten eleven twelve thirteen"
    ids = tiny_loaded.tokenizer.encode(text)
    scored = score_text(tiny_loaded.model, tiny_loaded.tokenizer, text, tiny_loaded.vocab_size,
                        tiny_loaded.context_length, exact=True)
    engine = Engine.from_loaded(tiny_loaded, SamplingSettings(temperature=1.0))
    engine.reset(tiny_loaded.tokenizer.decode(ids[:1]))
    for token in scored.tokens:
        why = engine.why(None, SamplingSettings(temperature=1.0))
        step = engine.step(token.id)
        assert abs(step.chosen.prob - token.prob) < 1e-6
        raw = {row.id: row.raw for row in why.rows}
        if token.id in raw:
            assert abs(raw[token.id] - token.prob) < 1e-6


def test_too_much_text_is_one_line(tiny_loaded, monkeypatch):
    from minigpt.engine import score as score_module
    monkeypatch.setattr(score_module, "MAX_SCORE_TOKENS", 10)
    with pytest.raises(PromptError, match="more than score takes at once"):
        score_text(tiny_loaded.model, tiny_loaded.tokenizer, "word " * 50,
                   tiny_loaded.vocab_size, tiny_loaded.context_length)


def test_progress_is_reported_for_long_texts(tiny_loaded):
    seen = []
    score_text(tiny_loaded.model, tiny_loaded.tokenizer, "word " * 600, tiny_loaded.vocab_size,
               tiny_loaded.context_length, exact=True, progress=lambda d, t: seen.append((d, t)))
    assert len(seen) >= 2 and all(d <= t for d, t in seen)
    assert len({t for _, t in seen}) == 1 and seen[-1][1] >= 512


def test_score_compare_keeps_its_title_whole_in_a_narrow_terminal(tiny_ckpt, other_ckpt,
                                                                   capsys, monkeypatch):
    """At 60 columns the title wrapped to the table's width, mid-formula."""
    monkeypatch.setenv("COLUMNS", "60")
    code = main(["score", str(tiny_ckpt), "--compare", str(other_ckpt), "--text",
                 "one two three four", "--device", "cpu"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and lines[0] == "where they differ most (|log p_A − log p_B|)"
    assert any(line.endswith(" tokens scored") and line.split()[0].isdigit() for line in lines)
