"""The ``hf`` backend: architectures we do not implement (Gemma 3 with sliding-window
layers and soft-capping, Qwen3, Mistral, Phi-3) open through transformers itself, and
what the CLI reports is transformers' own forward pass on the window it names."""

import json
import math
import warnings

import pytest
import torch

from conftest import run_cli
from hf_models import CHATML, WINDOW, byte_level_tokenizer, reinit, write_model

PROMPT = "hello 农夫山泉 the cat sat on the mat"


def tiny(kind: str):
    warnings.filterwarnings("ignore")
    import transformers as t

    t.utils.logging.set_verbosity_error()
    common = dict(vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=WINDOW)
    if kind == "gemma3":  # sliding-window layers, logit soft-capping
        config = t.Gemma3TextConfig(**common, head_dim=8, sliding_window=4,
                                    layer_types=["sliding_attention", "full_attention"] * 2,
                                    final_logit_softcapping=30.0, attn_logit_softcapping=50.0,
                                    query_pre_attn_scalar=8)
        return t.Gemma3ForCausalLM(config)
    if kind == "qwen3":
        return t.Qwen3ForCausalLM(t.Qwen3Config(**common, head_dim=8))
    if kind == "mistral":
        return t.MistralForCausalLM(t.MistralConfig(**common, sliding_window=8))
    return t.Phi3ForCausalLM(t.Phi3Config(**common, pad_token_id=0))


KINDS = ("gemma3", "qwen3", "mistral", "phi3")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("transformers")
    out = {}
    for seed, kind in enumerate(KINDS, 11):
        torch.manual_seed(seed)
        directory = root / kind
        reinit(tiny(kind), seed).eval().save_pretrained(directory)
        byte_level_tokenizer(290).save(str(directory / "tokenizer.json"))
        out[kind] = directory
    return out


def reference(directory):
    from transformers import AutoModelForCausalLM

    warnings.filterwarnings("ignore")
    return AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()


def probs_of(model, window: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = model(torch.tensor([window])).logits[0, -1]
    return torch.softmax(logits.double(), dim=-1)


def seen(ids, slide):
    start = next(s for s in range(0, len(ids) + 1, slide) if len(ids) - s <= WINDOW)
    return ids[start:]


@pytest.mark.parametrize("slide", [1, None], ids=["slide1", "default"])
@pytest.mark.parametrize("kind", KINDS)
def test_greedy_trace_past_the_window_is_transformers_own(capsys, dirs, kind, slide):
    directory = dirs[kind]
    flags = ["--slide", slide] if slide else []
    code, out, err = run_cli(capsys, "trace", directory, "--prompt", PROMPT, "--json",
                             "--temperature", 0, "--max-new-tokens", 10, *flags)
    assert code == 0, err
    model = reference(directory)
    from tokenizers import Tokenizer
    ids = Tokenizer.from_file(str(directory / "tokenizer.json")).encode(PROMPT).ids
    steps = [json.loads(line) for line in out.splitlines()]
    assert len(ids) + len(steps) > WINDOW + 4
    for step in steps:
        window = seen(ids, slide or WINDOW // 2)
        assert step["context"] == len(window)
        probs = probs_of(model, window)
        top = torch.topk(probs, 5)
        assert [c["id"] for c in step["candidates"]] == top.indices.tolist()
        assert [c["prob"] for c in step["candidates"]] == \
            pytest.approx(top.values.tolist(), abs=1e-5)
        ids.append(step["chosen"]["id"])


@pytest.mark.parametrize("kind", KINDS)
def test_teacher_forced_score_is_transformers_own(capsys, dirs, kind):
    directory = dirs[kind]
    text = "the cat sat on the mat, 天然水 hello there the end of the thesis"
    code, out, err = run_cli(capsys, "score", directory, "--text", text, "--exact", "--json",
                             "--slide", 1)
    assert code == 0, err
    model = reference(directory)
    from tokenizers import Tokenizer
    ids = Tokenizer.from_file(str(directory / "tokenizer.json")).encode(text).ids
    for token in json.loads(out)["tokens"]:
        expected = probs_of(model, ids[:token["index"]][-WINDOW:])[token["id"]].item()
        assert math.exp(token["log_prob"]) == pytest.approx(expected, abs=1e-5)


def test_inspect_says_which_backend_runs_it(capsys, dirs, tmp_path):
    code, out, err = run_cli(capsys, "inspect", dirs["gemma3"], "--json")
    report = json.loads(out)
    assert code == 0 and report["backend"] == "hf" and "via transformers" in report["format"]
    llama = write_model(tmp_path / "llama", "llama")  # one we have: native unless asked
    code, out, err = run_cli(capsys, "inspect", llama, "--json")
    assert json.loads(out)["backend"] == "native"
    code, out, err = run_cli(capsys, "inspect", llama, "--json", "--backend", "hf")
    assert json.loads(out)["backend"] == "hf"


def test_native_and_hf_agree_on_a_llama_directory(capsys, tmp_path):
    directory = write_model(tmp_path / "llama", "llama")
    runs = {}
    for backend in ("native", "hf"):
        code, out, err = run_cli(capsys, "trace", directory, "--prompt", PROMPT, "--json",
                                 "--temperature", 0, "--max-new-tokens", 8, "--backend",
                                 backend, "--slide", 1)
        assert code == 0, err
        runs[backend] = [json.loads(line) for line in out.splitlines()]
    for a, b in zip(runs["native"], runs["hf"]):
        assert [c["id"] for c in a["candidates"]] == [c["id"] for c in b["candidates"]]
        assert [c["prob"] for c in a["candidates"]] == \
            pytest.approx([c["prob"] for c in b["candidates"]], abs=1e-5)


def test_chat_templates_work_as_on_native_models(capsys, dirs, tmp_path):
    import shutil

    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer

    directory = shutil.copytree(dirs["qwen3"], tmp_path / "chat")
    tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tok.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                            chat_template=CHATML).save_pretrained(directory)
    messages = [{"role": "user", "content": "hi"}]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(messages))
    code, out, err = run_cli(capsys, "trace", directory, "--messages", path, "--json",
                             "--temperature", 0, "--max-new-tokens", 2, "--ignore-eos")
    assert code == 0, err
    ids = PreTrainedTokenizerFast.from_pretrained(directory).apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True)["input_ids"]
    probs = probs_of(reference(directory), seen(ids, WINDOW // 2))
    first = json.loads(out.splitlines()[0])
    assert [c["id"] for c in first["candidates"]] == torch.topk(probs, 5).indices.tolist()


def test_without_transformers_it_says_what_to_install(capsys, dirs, monkeypatch):
    import minigpt.backends.hf as backend

    monkeypatch.setattr(backend, "transformers_module", lambda: None)
    code, out, err = run_cli(capsys, "inspect", dirs["qwen3"])
    assert code == 2 and len(err.splitlines()) == 1
    assert 'opens through transformers, which is not installed: pip install -e ".[hf]"' in err


def test_an_absurd_layer_count_is_refused_before_transformers_builds(capsys, dirs, tmp_path):
    import shutil

    directory = shutil.copytree(dirs["qwen3"], tmp_path / "absurd")
    config = json.loads((directory / "config.json").read_text())
    config["num_hidden_layers"] = 100_000
    (directory / "config.json").write_text(json.dumps(config))
    code, out, err = run_cli(capsys, "trace", directory, "--prompt", "hi")
    assert code == 2 and "num_hidden_layers is 100,000 but the tensors hold 4 layers" in err


async def test_the_explorer_steps_undoes_and_attends_on_gemma3(dirs, engine_client,
                                                               monkeypatch):
    """The explorer on a transformers-run model: steps, undo, pick, the attention strip
    (eager attention's rows) and why, as on a native one; the header says hf."""
    from conftest import screen_text, settle
    from minigpt.settings import SamplingSettings
    from textual.widgets import Input
    from tui.app import make_app

    monkeypatch.chdir(dirs["gemma3"].parent)
    app = make_app("gemma3", SamplingSettings(temperature=0, max_new_tokens=4), device="cpu",
                   client=engine_client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert app.info.backend == "hf" and "cpu · hf" in screen_text(app).splitlines()[0]
        app.query_one("#prompt", Input).value = "the cat"
        await pilot.press("enter")
        await settle(app, pilot)
        assert len(app.history) == 4
        app.query_one("#candidates").focus()
        await pilot.press("u", "2", "a", "w")
        await settle(app, pilot)
        assert len(app.history) == 4 and app.history[-1].chosen_rank == 2
        title, rows, error = app.attention
        assert not error and len(rows.weights) == 4  # a row per layer
        assert all(abs(sum(head) - 1) < 1e-4 for layer in rows.weights for head in layer)
        assert "why step 5" in screen_text(app)
