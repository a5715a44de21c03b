"""GGUF files: the model, the tokenizer and the chat template from the file itself, and
the numbers transformers' own GGUF loading gives — in every quant type the gguf package
reads, on tiny files written here and on the real SmolLM2-135M-Instruct Q4_1."""

import json
import warnings

import pytest
import torch

from conftest import run_cli
from gguf_models import K_QUANTS, WRITABLE, write_gguf

PROMPT = "hello 农夫山泉 the cat sat"
WINDOW = 16


def transformers_gguf(path):
    """transformers' own GGUF loading: the model (dequantized) and the tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    import transformers

    warnings.filterwarnings("ignore")
    transformers.utils.logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                 dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def probs_of(model, window):
    with torch.no_grad():
        logits = model(torch.tensor([window])).logits[0, -1]
    return torch.softmax(logits.double(), dim=-1)


@pytest.mark.parametrize("kind, quant", [*(("llama", q) for q in WRITABLE + K_QUANTS),
                                         ("qwen2", "Q8_0"), ("qwen2", "Q4_K"),
                                         ("qwen3", "Q8_0")])  # through transformers
def test_a_tiny_gguf_traces_as_transformers_loads_it(capsys, tmp_path, kind, quant):
    path = write_gguf(tmp_path / f"{kind}-{quant}.gguf", kind, quant)
    code, out, err = run_cli(capsys, "trace", path, "--prompt", PROMPT, "--json",
                             "--temperature", 0, "--max-new-tokens", 6, "--slide", 1,
                             "--ignore-eos")
    assert code == 0, err
    model, tokenizer = transformers_gguf(path)
    ids = tokenizer(PROMPT)["input_ids"]
    steps = [json.loads(line) for line in out.splitlines()]
    assert len(ids) + len(steps) > WINDOW  # past the window too
    for step in steps:
        probs = probs_of(model, ids[-WINDOW:])
        top = torch.topk(probs, 5)
        assert [c["prob"] for c in step["candidates"]] == \
            pytest.approx(top.values.tolist(), abs=1e-5)
        assert step["chosen"]["id"] == int(probs.argmax())
        ids.append(step["chosen"]["id"])


def test_prompt_and_chat_ids_are_transformers_own(capsys, tmp_path):
    from minigpt.models.checkpoint import load

    path = write_gguf(tmp_path / "chat.gguf", "llama", "Q8_0")
    loaded = load(path, device="cpu")
    _, tokenizer = transformers_gguf(path)
    for text in (PROMPT, "<|im_start|>user\nhi<|im_end|>", " leading space"):
        assert loaded.tokenizer.encode(text) == tokenizer(text)["input_ids"]
    messages = [{"role": "user", "content": "hi there"}]
    assert loaded.chat is not None
    ours = loaded.tokenizer.encode_chat(loaded.chat.render(messages))
    assert ours == tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                 tokenize=True)["input_ids"]
    assert loaded.eos_ids == (tokenizer.convert_tokens_to_ids("<|im_end|>"),)


def test_inspect_names_the_file_its_quant_types_and_backend(capsys, tmp_path):
    path = write_gguf(tmp_path / "m.gguf", "llama", "Q4_1")
    code, out, err = run_cli(capsys, "inspect", path, "--json")
    report = json.loads(out)
    assert code == 0, err
    assert report["format"] == "GGUF llama (F32/Q4_1, dequantized to float32)"
    assert report["backend"] == "native" and report["tokenizer"].startswith("gguf · vocab")
    assert ("model.layers.0.self_attn.q_proj.weight", [256, 256], "Q4_1") in \
        [(t["name"], t["shape"], t["dtype"]) for t in report["tensors"]]
    code, out, err = run_cli(capsys, "inspect", path, "--json", "--backend", "hf")
    assert json.loads(out)["backend"] == "hf"


def test_native_and_transformers_agree_on_a_gguf(capsys, tmp_path):
    path = write_gguf(tmp_path / "m.gguf", "llama", "Q5_1")
    runs = {}
    for backend in ("native", "hf"):
        code, out, err = run_cli(capsys, "trace", path, "--prompt", PROMPT, "--json",
                                 "--temperature", 0, "--max-new-tokens", 4, "--backend",
                                 backend)
        assert code == 0, err
        runs[backend] = [json.loads(line) for line in out.splitlines()]
    for a, b in zip(runs["native"], runs["hf"]):
        assert [c["prob"] for c in a["candidates"]] == \
            pytest.approx([c["prob"] for c in b["candidates"]], abs=1e-5)


def test_the_real_smollm2_gguf_is_transformers_gguf_loading(capsys, smollm2):
    """The Q4_1 file itself against transformers' dequantized copy of it (the fixture's
    directory): greedy trace, score and ids."""
    from real_model import gguf_path
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_path()
    prompt = "The capital of France is"
    code, out, err = run_cli(capsys, "trace", path, "--prompt", prompt, "--json",
                             "--temperature", 0, "--max-new-tokens", 3, "--device", "cpu")
    assert code == 0, err
    warnings.filterwarnings("ignore")
    reference = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    ids = tokenizer(prompt)["input_ids"]
    for line in out.splitlines():
        step = json.loads(line)
        probs = probs_of(reference, ids)
        assert [c["id"] for c in step["candidates"]] == torch.topk(probs, 5).indices.tolist()
        assert [c["prob"] for c in step["candidates"]] == \
            pytest.approx(torch.topk(probs, 5).values.tolist(), abs=1e-5)
        ids.append(step["chosen"]["id"])
    assert "Paris" in json.loads(out.splitlines()[-1])["text"]
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    from minigpt.models.checkpoint import load
    loaded = load(path, device="cpu")
    assert loaded.tokenizer.encode_chat(loaded.chat.render(messages)) == \
        tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                      tokenize=True)["input_ids"]


async def test_the_explorer_opens_a_gguf_in_chat_mode(tmp_path, engine_client, monkeypatch):
    from conftest import screen_text, settle
    from minigpt.settings import SamplingSettings
    from textual.widgets import Input
    from tui.app import make_app

    path = write_gguf(tmp_path / "chat.gguf", "qwen2", "Q4_0")
    monkeypatch.chdir(tmp_path)
    app = make_app("chat.gguf", SamplingSettings(temperature=0, max_new_tokens=3,
                                                 ignore_eos=True),
                   device="cpu", client=engine_client)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert app.chat_mode and "chat.gguf" in screen_text(app).splitlines()[0]
        app.query_one("#prompt", Input).value = "hi there"
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.turn.messages == ({"role": "user", "content": "hi there"},)
        assert len(app.history) == 3 and "user › hi there" in screen_text(app)


def test_a_gguf_scores_as_transformers_loads_it(capsys, tmp_path):
    path = write_gguf(tmp_path / "m.gguf", "qwen2", "Q5_0")
    text = "the cat sat on the mat, 天然水 hello there the end"
    code, out, err = run_cli(capsys, "score", path, "--text", text, "--exact", "--json",
                             "--slide", 1)
    assert code == 0, err
    model, tokenizer = transformers_gguf(path)
    ids = tokenizer(text)["input_ids"]
    import math
    for token in json.loads(out)["tokens"]:
        expected = probs_of(model, ids[:token["index"]][-WINDOW:])[token["id"]].item()
        assert math.exp(token["log_prob"]) == pytest.approx(expected, abs=1e-5)
