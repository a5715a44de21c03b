"""Chat templates: the conversation's ids are transformers' apply_chat_template ids, the
assistant's reply is transformers' forward pass, and it ends at the end-of-turn token."""

import json
import math
import shutil

import pytest
import torch

from conftest import run_cli
from hf_models import (WINDOW, reference_model, reference_probs, set_eos, write_chat_model,
                       write_model)

CONVERSATIONS = [
    [{"role": "user", "content": "hello 农夫"}],
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the cat"}],
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"},
     {"role": "user", "content": "天然水?"}],
]


@pytest.fixture(scope="module")
def chat_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    return {kind: write_chat_model(root / kind, kind) for kind in ("chatml", "zephyr")}


def messages_file(tmp_path, messages, name="m.json"):
    path = tmp_path / name
    path.write_text(json.dumps(messages, ensure_ascii=False), encoding="utf-8")
    return path


def reference_ids(directory, messages, add_generation_prompt=True):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    return tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                         tokenize=True)["input_ids"]


@pytest.mark.parametrize("kind", ["chatml", "zephyr"])
def test_rendered_ids_equal_apply_chat_template(chat_dirs, kind):
    from minigpt.models.checkpoint import load

    loaded = load(chat_dirs[kind], device="cpu")
    for messages in CONVERSATIONS:
        ours = loaded.tokenizer.encode_chat(loaded.chat.render(messages))
        assert ours == reference_ids(chat_dirs[kind], messages)


@pytest.mark.parametrize("kind", ["chatml", "zephyr"])
def test_trace_messages_equals_transformers_on_those_ids(capsys, chat_dirs, tmp_path, kind):
    directory = chat_dirs[kind]
    messages = CONVERSATIONS[2]
    code, out, err = run_cli(capsys, "trace", directory, "--messages",
                             messages_file(tmp_path, messages), "--temperature", 0, "--json",
                             "--max-new-tokens", 6, "--ignore-eos", "--slide", 1)
    assert code == 0, err
    ids = reference_ids(directory, messages)
    reference = reference_model(directory)
    for line in out.splitlines():
        step = json.loads(line)
        probs = reference_probs(reference, ids)
        top = torch.topk(probs, 5)
        assert [c["id"] for c in step["candidates"]] == top.indices.tolist()
        assert [c["prob"] for c in step["candidates"]] == \
            pytest.approx(top.values.tolist(), abs=1e-5)
        ids.append(step["chosen"]["id"])
    if len(ids) > WINDOW:
        assert "the model sees the last 16" in err  # a conversation past the window: said


def test_a_reply_ends_at_the_end_of_turn_token(capsys, chat_dirs, tmp_path):
    directory = shutil.copytree(chat_dirs["chatml"], tmp_path / "chatml")
    path = messages_file(tmp_path, CONVERSATIONS[0])
    args = ("generate", directory, "--messages", path, "--temperature", 0, "--json",
            "--max-new-tokens", 6)
    code, out, _ = run_cli(capsys, *args, "--ignore-eos")
    free = json.loads(out)["token_ids"]
    im_end = 286
    set_eos(directory, [im_end, free[1]])  # the second reply token ends the turn now
    code, out, _ = run_cli(capsys, *args)
    stopped = json.loads(out)
    assert stopped["token_ids"] == free[:free.index(free[1]) + 1]
    assert stopped["stop_reason"] == "eos"


def test_score_messages_scores_assistant_tokens_only(capsys, chat_dirs, tmp_path):
    directory = chat_dirs["chatml"]
    messages = [*CONVERSATIONS[2][:2], {"role": "user", "content": "and?"},
                {"role": "assistant", "content": "the end"}]
    code, out, err = run_cli(capsys, "score", directory, "--messages",
                             messages_file(tmp_path, messages), "--exact", "--json",
                             "--slide", 1)
    assert code == 0, err
    result = json.loads(out)
    full = reference_ids(directory, messages, add_generation_prompt=False)
    spans = []
    for i in (1, 3):
        start = len(reference_ids(directory, messages[:i]))
        end = len(reference_ids(directory, messages[:i + 1], add_generation_prompt=False))
        spans.append(range(start, end))
    assert [t["index"] for t in result["tokens"]] == [j for span in spans for j in span]
    # One numbering, from 1, in the JSON and the text (it said "message": 1 in one and
    # "message 2 (assistant)" in the other).
    assert [record["message"] for record in result["messages"]] == [2, 4]
    code, out, _ = run_cli(capsys, "score", directory, "--messages",
                           messages_file(tmp_path, messages), "--exact")
    assert "message 2 (assistant)" in out and "message 4 (assistant)" in out
    reference = reference_model(directory)
    for record, span in zip(result["messages"], spans):
        log_probs = [math.log(reference_probs(reference, full[:j])[full[j]].item())
                     for j in span]
        assert record["tokens"] == len(span)
        assert record["perplexity"] == pytest.approx(math.exp(-sum(log_probs) / len(span)),
                                                     rel=1e-4)


@pytest.mark.parametrize("content, expected", [
    ('[{"role": "tool", "content": "x"}]', "the chat template refused this conversation: "
                                           "roles are system, user and assistant"),
    ('{"role": "user"}', "expected a non-empty JSON list"),
    ('[{"role": "user", "content": 3}]', "message 1 is not"),
    ("[{]", "not JSON"),
])
def test_bad_messages_are_one_line(capsys, chat_dirs, tmp_path, content, expected):
    path = tmp_path / "bad.json"
    path.write_text(content)
    code, out, err = run_cli(capsys, "generate", chat_dirs["zephyr"], "--messages", path)
    assert code == 2 and out == "" and expected in err and len(err.splitlines()) == 1, err


def test_messages_on_a_model_without_a_template_say_so(capsys, tmp_path):
    directory = write_model(tmp_path / "gpt2", "gpt2")
    path = messages_file(tmp_path, CONVERSATIONS[0])
    code, out, err = run_cli(capsys, "trace", directory, "--messages", path)
    assert code == 2 and "no chat template" in err and len(err.splitlines()) == 1


def test_a_template_that_does_not_parse_leaves_raw_text(capsys, chat_dirs, tmp_path):
    directory = shutil.copytree(chat_dirs["chatml"], tmp_path / "broken")
    (directory / "chat_template.jinja").write_text("{% for m in messages %}{{ m['content'] }")
    code, out, err = run_cli(capsys, "inspect", directory, "--json")
    assert code == 0, err
    assert any("the chat template does not parse" in n and "raw text only" in n
               for n in json.loads(out)["inferred"])
    code, out, err = run_cli(capsys, "generate", directory, "--prompt", "the cat",
                             "--max-new-tokens", 2)
    assert code == 0, err
    path = messages_file(tmp_path, CONVERSATIONS[0])
    code, out, err = run_cli(capsys, "generate", directory, "--messages", path)
    # Why, not only that: it said "no chat template" without the parse error.
    assert code == 2 and len(err.splitlines()) == 1
    assert "the chat template cannot be used (the chat template does not parse:" in err
