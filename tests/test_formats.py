"""Checkpoint zoo: each layout, written by an independent implementation, gives equal logits."""

import json
import pickle

import pytest
import torch

from minigpt.models.checkpoint import load
from minigpt.cli.main import main
from minigpt.errors import CheckpointError, TokenizerError
from reference import assert_top_candidates, book_h_params, book_logits, random_book_state_dict
from reference_gpt2 import gpt2_logits, random_nanogpt

CHARS = "\n !,.?abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ农夫山泉"


def write_meta(path):
    stoi = {ch: i for i, ch in enumerate(CHARS)}
    with open(path, "wb") as f:
        pickle.dump({"vocab_size": len(CHARS), "stoi": stoi,
                     "itos": {i: ch for ch, i in stoi.items()}}, f)


def first_edition(sd: dict) -> dict:
    """Rename the book's keys to the first edition's and add the extra embedding row."""
    renames = [(".ln1.", ".layer_norm_1."), (".ln2.", ".layer_norm_2."),
               (".mha.", ".multi_head_attention_layer."), (".ffn.", ".feed_forward_layer."),
               (".Wq.", ".query_layer."), (".Wk.", ".key_layer."), (".Wv.", ".value_layer."),
               (".mask", ".tril"), ("model_out_linear_layer.", "language_model_out_linear_layer.")]
    out = {}
    for key, value in sd.items():
        for new, old in renames:
            key = key.replace(new, old)
        out[key] = value
    emb = out["token_embedding_lookup_table.weight"]
    out["token_embedding_lookup_table.weight"] = torch.cat([emb, torch.randn(1, emb.shape[1])])
    return out


@pytest.mark.parametrize("shape", [dict(d_model=32, num_heads=4, num_blocks=2, context_length=16),
                                   dict(d_model=24, num_heads=2, num_blocks=1, context_length=8)])
def test_first_edition_names(tmp_path, shape):
    hp = book_h_params(max_token_value=1000, **shape)
    sd = first_edition(random_book_state_dict(hp, seed=2))
    torch.save(sd, tmp_path / "model-ckpt.pt")
    loaded = load(tmp_path / "model-ckpt.pt", device="cpu")
    assert loaded.h_params["max_token_value"] == 1000 and loaded.h_params["embedding_rows"] == 1001
    assert "first-edition" in loaded.format
    ref_sd = random_book_state_dict(hp, seed=2)
    ref_sd["token_embedding_lookup_table.weight"] = sd["token_embedding_lookup_table.weight"]
    ids = [1, 1000, 5, 7] * 5  # id 1000 exists only in the first edition's embedding
    with torch.no_grad():
        ours = loaded.model(torch.tensor([ids[-hp["context_length"]:]]))[0][0]
    ref = book_logits(ref_sd, hp, ids)
    assert torch.allclose(ours.double(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("compiled", [True, False])
def test_nanogpt_equal_logits_through_the_engine(tmp_path, bias, compiled):
    args = dict(n_layer=2, n_head=4, n_embd=32, block_size=16, bias=bias, vocab_size=len(CHARS))
    ckpt = random_nanogpt(args, seed=int(bias) + 2 * int(compiled), compiled=compiled)
    torch.save(ckpt, tmp_path / "ckpt.pt")
    write_meta(tmp_path / "meta.pkl")
    loaded = load(tmp_path / "ckpt.pt", device="cpu")
    assert loaded.format.startswith("nanoGPT") and loaded.tokenizer.name.startswith("char")
    assert any("_orig_mod" in n for n in loaded.inferred) == compiled

    from minigpt.engine.engine import Engine
    from minigpt.settings import SamplingSettings
    engine = Engine.from_loaded(loaded, SamplingSettings(temperature=0, max_new_tokens=30))
    engine.reset("hello world")
    ids = list(engine.prompt_ids)
    for step in engine.run():  # past block_size: the window slides like nanoGPT's crop
        ref = torch.softmax(gpt2_logits(ckpt["model"], args, ids)[-1], -1)
        assert_top_candidates([c.id for c in step.candidates],
                              [c.prob for c in step.candidates], ref, tol=1e-5)
        ids.append(step.chosen.id)


def test_nanogpt_trace_cli_with_explicit_meta(tmp_path, capsys):
    args = dict(n_layer=1, n_head=2, n_embd=16, block_size=8, bias=True, vocab_size=len(CHARS))
    ckpt = random_nanogpt(args)
    (tmp_path / "out").mkdir()
    torch.save(ckpt, tmp_path / "out" / "ckpt.pt")
    write_meta(tmp_path / "vocab.pkl")
    code = main(["trace", str(tmp_path / "out" / "ckpt.pt"), "--tokenizer",
                 str(tmp_path / "vocab.pkl"), "--prompt", "hi", "--temperature", "0",
                 "--max-new-tokens", "3", "--json", "--device", "cpu"])  # as the reference
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0 and len(lines) == 3
    ids = [CHARS.index("h"), CHARS.index("i")]
    for line in lines:
        expected = int(gpt2_logits(ckpt["model"], args, ids)[-1].argmax())
        assert line["chosen"]["id"] == expected
        ids.append(expected)


def test_inspect_names_format_and_inferred(tmp_path, capsys):
    hp = book_h_params(max_token_value=500)
    torch.save(random_book_state_dict(hp), tmp_path / "bare.pt")
    assert main(["inspect", str(tmp_path / "bare.pt"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"].startswith("bare book") and any("mask" in n for n in data["inferred"])


def test_nanogpt_gpt2_vocab_missing_says_what_to_do(tmp_path):
    args = dict(n_layer=1, n_head=2, n_embd=16, block_size=8, bias=False, vocab_size=50304)
    torch.save(random_nanogpt(args), tmp_path / "ckpt.pt")
    with pytest.raises(TokenizerError, match="gpt2 vocabulary.*--tokenizer.*openaipublic"):
        load(tmp_path / "ckpt.pt", device="cpu")


def test_inspect_needs_no_vocabulary(tmp_path, capsys):
    args = dict(n_layer=1, n_head=2, n_embd=16, block_size=8, bias=False, vocab_size=50304)
    torch.save(random_nanogpt(args), tmp_path / "ckpt.pt")
    assert main(["inspect", str(tmp_path / "ckpt.pt"), "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tokenizer"] == "none available offline" and report["format"]


def test_a_meta_pkl_or_a_directory_given_as_the_checkpoint_says_what_to_do(tmp_path, capsys):
    with open(tmp_path / "meta.pkl", "wb") as f:
        pickle.dump({"stoi": {"a": 0}, "itos": {0: "a"}}, f)
    assert main(["inspect", str(tmp_path / "meta.pkl")]) == 2
    assert "nanoGPT vocabulary (meta.pkl)" in capsys.readouterr().err
    torch.save(random_nanogpt(dict(n_layer=1, n_head=2, n_embd=16, block_size=8, bias=False,
                                   vocab_size=50304)), tmp_path / "ckpt.pt")
    assert main(["inspect", str(tmp_path)]) == 2
    assert f"did you mean {tmp_path / 'ckpt.pt'}?" in capsys.readouterr().err


def test_vocabulary_ids_outside_the_model_are_refused_at_load(tmp_path):
    args = dict(n_layer=1, n_head=2, n_embd=16, block_size=8, bias=True, vocab_size=3)
    torch.save(random_nanogpt(args), tmp_path / "ckpt.pt")
    for stoi in ({"a": 0, "b": -1}, {"a": 0, "b": 7}):
        with open(tmp_path / "meta.pkl", "wb") as f:
            pickle.dump({"stoi": stoi, "itos": {v: k for k, v in stoi.items()}}, f)
        with pytest.raises(TokenizerError, match="negative token ids|outside this model"):
            load(tmp_path / "ckpt.pt", device="cpu")


class Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_hostile_meta_pkl_is_refused_and_never_runs(tmp_path):
    args = dict(n_layer=1, n_head=2, n_embd=16, block_size=8, bias=True, vocab_size=len(CHARS))
    torch.save(random_nanogpt(args), tmp_path / "ckpt.pt")
    target = tmp_path / "pwned"
    with open(tmp_path / "meta.pkl", "wb") as f:
        pickle.dump({"stoi": {"a": 0}, "itos": {0: "a"}, "x": Exploit(str(target))}, f)
    with pytest.raises(TokenizerError, match="refused for safety"):
        load(tmp_path / "ckpt.pt", device="cpu")
    assert not target.exists()


def test_unknown_layout_lists_what_was_found_and_supported(tmp_path):
    torch.save({"encoder.weight": torch.zeros(2, 2), "decoder.bias": torch.zeros(2)},
               tmp_path / "other.pt")
    with pytest.raises(CheckpointError) as e:
        load(tmp_path / "other.pt")
    message = str(e.value)
    assert "\n" not in message and "encoder.weight" in message and "nanoGPT" in message
