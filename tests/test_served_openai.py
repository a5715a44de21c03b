"""vLLM and SGLang clients, against servers on 127.0.0.1 that answer in the shapes those
servers document (neither runs on a CPU-only test machine): what each request asks for,
and how each reply becomes candidates. llama-server is tested against the real binary."""

import json
import math

import pytest

from conftest import run_cli
from fake_servers import FakeServer


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from hf_models import write_model

    return write_model(tmp_path_factory.mktemp("served") / "tiny", "gpt2")


def models(owner):
    return lambda body: {"object": "list", "data": [
        {"id": "org/tiny", "object": "model", "owned_by": owner, "max_model_len": 32}]}


def vllm_routes(seen):
    def completions(body):
        seen.append(body)
        return {"choices": [{"index": 0, "text": "x", "finish_reason": "length", "logprobs": {
            "tokens": ["token_id:72"], "token_logprobs": [-0.25],
            "top_logprobs": [{"token_id:72": -0.25, "token_id:101": -1.75,
                              "token_id:33": -3.0}]}}],
            "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": 1,
                      "prompt_tokens_details": {"cached_tokens": len(body["prompt"]) - 1}}}
    return {"GET /v1/models": models("vllm"), "POST /v1/completions": completions}


def sglang_routes(seen):
    def generate(body):
        seen.append(body)
        top = [[-0.5, 72, None], [-1.25, 101, None]]
        return {"text": "x", "output_ids": [72], "meta_info": {
            "output_token_logprobs": [top[0]], "output_top_logprobs": [top],
            "finish_reason": {"type": "length", "length": 1},
            "cached_tokens": len(body["input_ids"]) - 1}}
    return {"GET /v1/models": models("sglang"), "POST /generate": generate}


@pytest.mark.parametrize("kind, routes", [("vllm", vllm_routes), ("sglang", sglang_routes)])
def test_a_step_is_one_request_by_ids_and_its_top_n_comes_back(capsys, tokenizer_dir, kind,
                                                                 routes):
    from minigpt.text.hf_tokenizer import load_hf_tokenizer

    seen = []
    with FakeServer(routes(seen)) as server:
        code, out, err = run_cli(capsys, "trace", "--server", server.url, "--tokenizer",
                                 tokenizer_dir, "--prompt", "the cat", "--temperature", 0.7,
                                 "--top-k", 40, "--seed", 5, "--max-new-tokens", 2, "--json")
        assert code == 0, err
        code, info, err = run_cli(capsys, "inspect", "--server", server.url, "--tokenizer",
                                  tokenizer_dir, "--json")
    steps = [json.loads(line) for line in out.splitlines()]
    ids = load_hf_tokenizer(tokenizer_dir).encode("the cat")
    if kind == "vllm":
        first = seen[0]
        assert first["prompt"] == ids and first["max_tokens"] == 1 and first["logprobs"] == 20
        assert first["return_tokens_as_token_ids"] and first["model"] == "org/tiny"
        assert first["temperature"] == 0.7 and first["top_k"] == 40
        assert seen[1]["prompt"] == ids + [72]  # the next step: the ids, never text
        expected = [(72, -0.25), (101, -1.75), (33, -3.0)]
    else:
        first = seen[0]
        assert first["input_ids"] == ids and first["top_logprobs_num"] == 20
        assert first["sampling_params"]["max_new_tokens"] == 1
        assert first["sampling_params"]["temperature"] == 0.7
        assert seen[1]["input_ids"] == ids + [72]
        expected = [(72, -0.5), (101, -1.25)]
    assert [c["id"] for c in steps[0]["candidates"]] == [i for i, _ in expected]
    assert [c["prob"] for c in steps[0]["candidates"]] == \
        pytest.approx([math.exp(lp) for _, lp in expected])
    assert json.loads(info)["format"] == f"served · {kind} · org/tiny"


def test_without_a_tokenize_endpoint_the_directory_is_asked_for(capsys):
    with FakeServer(vllm_routes([])) as server:
        code, out, err = run_cli(capsys, "trace", "--server", server.url, "--prompt", "hi")
    assert code == 2 and "--tokenizer DIR" in err and err.count("\n") == 1, err


def test_a_server_holding_several_models_asks_which(capsys, tokenizer_dir):
    routes = vllm_routes([])
    routes["GET /v1/models"] = lambda body: {"data": [
        {"id": "a", "owned_by": "vllm", "max_model_len": 32},
        {"id": "b", "owned_by": "vllm", "max_model_len": 32}]}
    with FakeServer(routes) as server:
        code, out, err = run_cli(capsys, "trace", "--server", server.url, "--tokenizer",
                                 tokenizer_dir, "--prompt", "hi")
        assert code == 1 and "serves 2 models (a, b): --model NAME" in err, err
        code, out, err = run_cli(capsys, "trace", "--server", server.url, "--tokenizer",
                                 tokenizer_dir, "--prompt", "hi", "--model", "b",
                                 "--max-new-tokens", 1, "--json")
        assert code == 0, err
        code, out, err = run_cli(capsys, "trace", "--server", server.url, "--tokenizer",
                                 tokenizer_dir, "--prompt", "hi", "--model", "c")
        assert code == 1 and "serves no model 'c'" in err, err


def test_a_token_that_is_not_an_id_is_refused(capsys, tokenizer_dir):
    routes = vllm_routes([])
    routes["POST /v1/completions"] = lambda body: {"choices": [{"logprobs": {
        "tokens": ["hello"], "token_logprobs": [-0.1], "top_logprobs": [{"hello": -0.1}]}}]}
    with FakeServer(routes) as server:
        code, out, err = run_cli(capsys, "trace", "--server", server.url, "--tokenizer",
                                 tokenizer_dir, "--prompt", "hi")
    assert code == 1 and "not an id" in err and err.count("\n") == 1, err


def test_chat_uses_the_served_directorys_template(capsys, tmp_path):
    """vLLM renders no template for us: the Hugging Face directory it serves
    (``--tokenizer DIR``) does, as in-process; the ids sent are that rendering's."""
    from hf_models import write_chat_model
    from minigpt.models.checkpoint import load

    directory = write_chat_model(tmp_path / "chat", "chatml")
    seen = []
    messages = tmp_path / "m.json"
    messages.write_text(json.dumps([{"role": "user", "content": "hi there"}]))
    with FakeServer(vllm_routes(seen)) as server:
        code, out, err = run_cli(capsys, "trace", "--server", server.url, "--tokenizer",
                                 directory, "--messages", messages, "--max-new-tokens", 1,
                                 "--json")
    assert code == 0, err
    local = load(directory, device="cpu")
    rendered = local.chat.render([{"role": "user", "content": "hi there"}])
    assert seen[0]["prompt"] == local.tokenizer.encode_chat(rendered)


@pytest.mark.parametrize("key", ["token_id:²", "token_id:" + "9" * 5000, "token_id:999999"])
def test_an_id_outside_the_vocabulary_or_not_a_number_is_refused(capsys, tokenizer_dir, key):
    routes = vllm_routes([])
    routes["POST /v1/completions"] = lambda body: {"choices": [{"logprobs": {
        "tokens": [key], "token_logprobs": [-0.1], "top_logprobs": [{key: -0.1}]}}]}
    with FakeServer(routes) as server:
        code, out, err = run_cli(capsys, "trace", "--server", server.url, "--tokenizer",
                                 tokenizer_dir, "--prompt", "hi")
    assert code == 1 and "not an id" in err and err.count("\n") == 1, err


def test_a_forced_token_the_server_did_not_take_is_said_not_scored(capsys, tokenizer_dir):
    """The OpenAI API caps a logit bias at 100: a token far below the top may lose. The
    score would then be the wrong token's: it is one line instead."""
    with FakeServer(vllm_routes([])) as server:  # it always answers token 72
        code, out, err = run_cli(capsys, "score", "--server", server.url, "--tokenizer",
                                 tokenizer_dir, "--text", "the cat sat")
    assert code == 1 and "did not take the token asked for" in err, err
