"""Hugging Face directories (GPT-2, Llama with grouped-query attention and an untied head,
Qwen2 with biases, tied, bfloat16, sharded): our numbers are transformers' numbers."""

import json
import math

import pytest
import torch

from conftest import run_cli
from hf_models import WINDOW, reference_model, reference_probs, set_eos, write_model

KINDS = ("gpt2", "llama", "qwen2")
PROMPT = "hello 农夫山泉 the cat"


@pytest.fixture(scope="session")
def hf_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {kind: write_model(root / kind, kind) for kind in KINDS}


def seen(ids: list[int], slide: int) -> list[int]:
    """What the model sees of ``ids`` past the window (the README's rule, restated): it
    starts at the first multiple of ``slide`` that leaves at most WINDOW tokens."""
    start = next(s for s in range(0, len(ids) + 1, slide) if len(ids) - s <= WINDOW)
    return ids[start:]


SLIDES = [1, None]  # --slide 1: the exact last window; None: the default, half the window


@pytest.mark.parametrize("slide", SLIDES, ids=["slide1", "default"])
@pytest.mark.parametrize("kind", KINDS)
def test_greedy_trace_past_the_window_equals_transformers(capsys, hf_dirs, kind, slide):
    directory = hf_dirs[kind]
    flags = ["--slide", slide] if slide else []
    code, out, err = run_cli(capsys, "trace", directory, "--prompt", PROMPT, "--json",
                             "--temperature", 0, "--max-new-tokens", 12, "--ignore-eos",
                             *flags)
    assert code == 0, err
    steps = [json.loads(line) for line in out.splitlines()]
    slide = slide or WINDOW // 2
    reference = reference_model(directory)
    from minigpt.models.checkpoint import load
    ids = load(directory, device="cpu").tokenizer.encode(PROMPT)
    assert len(ids) + len(steps) > WINDOW + 4  # the window slides several times
    for step in steps:
        window = seen(ids, slide)
        assert step["context"] == len(window)  # the JSON says what the model saw
        probs = reference_probs(reference, window)
        top = torch.topk(probs, 5)
        assert [c["id"] for c in step["candidates"]] == top.indices.tolist()
        assert [c["prob"] for c in step["candidates"]] == \
            pytest.approx(top.values.tolist(), abs=1e-5)
        assert step["chosen"]["id"] == int(probs.argmax())
        ids.append(step["chosen"]["id"])
    if slide > 1:  # it slid: the model saw fewer than a window's tokens after that
        assert min(step["context"] for step in steps[1:]) == WINDOW - slide + 1


@pytest.mark.parametrize("slide", SLIDES, ids=["slide1", "default"])
@pytest.mark.parametrize("kind", KINDS)
def test_teacher_forced_score_equals_transformers(capsys, hf_dirs, kind, slide):
    """score --exact sees what generation sees: the same window rule, token by token."""
    directory = hf_dirs[kind]
    text = "the cat sat on the mat, 天然水 hello there the end of the thesis"
    flags = ["--slide", slide] if slide else []
    code, out, err = run_cli(capsys, "score", directory, "--text", text, "--exact", "--json",
                             *flags)
    assert code == 0, err
    scored = json.loads(out)["tokens"]
    from transformers import PreTrainedTokenizerFast
    ids = PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"))(text).input_ids
    assert [t["id"] for t in scored] == ids[1:] and len(ids) > WINDOW + 5
    reference = reference_model(directory)
    for token in scored:
        window = seen(ids[:token["index"]], slide or WINDOW // 2)
        assert token["context"] == len(window)
        expected = reference_probs(reference, window)[token["id"]].item()
        assert math.exp(token["log_prob"]) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_prompt_ids_are_the_tokenizers_own(hf_dirs, kind):
    """As transformers encodes: a BOS where the post-processor adds one, a typed special
    token as that token."""
    from transformers import PreTrainedTokenizerFast

    from minigpt.models.checkpoint import load

    directory = hf_dirs[kind]
    reference = PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"))
    ours = load(directory, device="cpu").tokenizer
    for text in (PROMPT, "the end<|endoftext|>the", "  spaces\tand\nlines ", "é 🙂 天"):
        assert ours.encode(text) == reference(text).input_ids, text
    if kind == "llama":
        assert ours.encode("the")[0] == 1  # <s>


def test_byte_fallback_and_metaspace_pieces_show_as_text_and_escapes(capsys, hf_dirs):
    """Llama's <0xE5> pieces are bytes (‹e5› escapes until the character is whole), its ▁
    is a space: never a raw <0x..>, never U+FFFD, in the JSON either."""
    directory = hf_dirs["llama"]
    code, out, err = run_cli(capsys, "score", directory, "--text", "the 农夫", "--json")
    assert code == 0, err
    texts = [t["text"] for t in json.loads(out)["tokens"]]
    assert "<0x" not in out and "\ufffd" not in out
    assert " the" in texts and "‹e5›" in texts and "‹86›" in texts


def test_a_typed_special_token_is_that_token_and_marked(capsys, hf_dirs):
    directory = hf_dirs["gpt2"]
    code, out, err = run_cli(capsys, "score", directory, "--text", "the cat<|endoftext|>the",
                             "--json")
    assert code == 0, err
    special = [t for t in json.loads(out)["tokens"] if t["id"] == 0]
    assert special and special[0]["text"] == "‹<|endoftext|>›"


def test_the_end_of_sequence_token_ends_a_run_unless_ignored(capsys, hf_dirs, tmp_path):
    import shutil

    directory = shutil.copytree(hf_dirs["gpt2"], tmp_path / "gpt2")
    args = ("generate", directory, "--prompt", PROMPT, "--temperature", 0, "--json",
            "--max-new-tokens", 8)
    code, out, _ = run_cli(capsys, *args, "--ignore-eos")
    free = json.loads(out)["token_ids"]
    assert code == 0 and len(free) == 8
    set_eos(directory, [9999, free[2]])  # a list, as generation_config.json may hold
    code, out, _ = run_cli(capsys, *args)
    stopped = json.loads(out)
    assert code == 0 and stopped["token_ids"] == free[:free.index(free[2]) + 1]
    assert stopped["stop_reason"] == "eos"
    code, out, _ = run_cli(capsys, *args, "--ignore-eos")
    assert json.loads(out)["token_ids"] == free


@pytest.mark.parametrize("kind", KINDS)
def test_the_cuda_graph_step_equals_the_cached_pass(hf_dirs, kind):
    """``step_at`` (fixed shapes, what a CUDA graph replays) gives the KV-cache pass's
    logits, on any device."""
    from minigpt.models.checkpoint import load

    model = load(hf_dirs[kind], device="cpu").model
    eager, fixed = model.make_decoder(), model.make_decoder()
    ids = [5, 17, 42, 9, 100, 7]
    with torch.inference_mode():
        fixed.last_logits(ids[:3])
        for n in range(4, len(ids) + 1):
            expected = eager.last_logits(ids[:n])
            got = fixed.step_at(torch.tensor([ids[n - 1]]), torch.tensor([n - 1]))
            assert torch.allclose(got, expected, atol=1e-5)


def test_directory_forms_and_inspect(capsys, hf_dirs, tmp_path):
    """The directory, its config.json, and a hub cache folder (refs/main → snapshot)."""
    import shutil

    cache = tmp_path / "models--org--tiny"
    shutil.copytree(hf_dirs["qwen2"], cache / "snapshots" / "abc123")
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text("abc123\n")
    reports = []
    for target in (hf_dirs["qwen2"], hf_dirs["qwen2"] / "config.json", cache):
        code, out, err = run_cli(capsys, "inspect", target, "--json")
        assert code == 0, err
        reports.append(json.loads(out))
    report = reports[0]
    assert report["format"] == "Hugging Face Qwen2ForCausalLM (2 safetensors shards, " \
                               "stored bfloat16)"
    assert report["h_params"]["model_type"] == "qwen2" and report["dtype"] == "float32"
    assert {t["dtype"] for t in report["tensors"]} == {"bfloat16"}
    assert any("window 16" in note for note in report["inferred"])
    assert report["tokenizer"].startswith("tokenizer.json")
    assert [r["parameters"] for r in reports] == [report["parameters"]] * 3


def test_window_caps_the_cache_and_bins_load_safely(capsys, hf_dirs, tmp_path):
    from safetensors.torch import load_file

    from minigpt.models.checkpoint import load

    small = load(hf_dirs["llama"], device="cpu", window=8)
    assert small.context_length == 8
    directory = tmp_path / "bin"
    directory.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (directory / name).write_bytes((hf_dirs["gpt2"] / name).read_bytes())
    torch.save(load_file(hf_dirs["gpt2"] / "model.safetensors"), directory / "pytorch_model.bin")
    as_bin = load(directory, device="cpu")
    as_safetensors = load(hf_dirs["gpt2"], device="cpu")
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        assert torch.equal(as_bin.model(ids)[0], as_safetensors.model(ids)[0])
    assert as_bin.format == "Hugging Face GPT2LMHeadModel (pytorch_model.bin, stored float32)"


def test_gpt2_vocab_and_merges_without_tokenizer_json(hf_dirs, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    from minigpt.models.checkpoint import load
    from tokenizers import Tokenizer

    directory = shutil.copytree(hf_dirs["gpt2"], tmp_path / "gpt2")
    Tokenizer.from_file(str(directory / "tokenizer.json")).model.save(str(directory))
    (directory / "tokenizer.json").unlink()
    ours = load(directory, device="cpu").tokenizer
    reference = AutoTokenizer.from_pretrained(directory)  # GPT-2's, from the two files
    for text in (PROMPT, "the end<|endoftext|>the", " 天然"):
        assert ours.encode(text) == reference(text).input_ids, text
    assert ours.name.startswith("vocab.json + merges.txt")


def test_attention_rows_are_per_query_head_under_grouped_query_attention(hf_dirs):
    """The strip's rows equal transformers' eager attention weights (last row of each
    layer, every query head), with 4 query heads sharing 2 key/value heads."""
    from minigpt.engine.engine import Engine
    from minigpt.models.checkpoint import load
    from transformers import AutoModelForCausalLM

    directory = hf_dirs["llama"]
    engine = Engine.from_loaded(load(directory, device="cpu"))
    engine.reset(PROMPT[:9])
    rows = engine.attention(None)
    reference = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32,
                                                     attn_implementation="eager").eval()
    with torch.no_grad():
        out = reference(torch.tensor([engine.tokens]), output_attentions=True)
    expected = torch.stack([layer[0, :, -1] for layer in out.attentions])  # [L, H, T]
    got = torch.tensor(rows.weights)
    assert got.shape == expected.shape == (2, 4, len(engine.tokens))
    assert torch.allclose(got.float(), expected, atol=1e-5)


def test_dtype_bfloat16_loads_a_directory(hf_dirs):
    from minigpt.models.checkpoint import load

    full = load(hf_dirs["qwen2"], device="cpu")
    half = load(hf_dirs["qwen2"], device="cpu", dtype="bfloat16")
    assert half.dtype == torch.bfloat16 and half.model.lm_head.weight.dtype == torch.bfloat16
    ids = [5, 6, 7]
    with torch.inference_mode():
        a = torch.softmax(full.model.make_decoder().last_logits(ids), -1)
        b = torch.softmax(half.model.make_decoder().last_logits(ids), -1)
    assert b.dtype == torch.float32 and (a - b).abs().max() < 0.02
