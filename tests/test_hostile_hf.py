"""Nothing lost, part 3: hostile Hugging Face configs, tokenizers, chat templates and
messages. Each is one line (exit 2 for a user's file) in bounded time and memory: every
case runs ``minigpt`` in a fresh interpreter under an address-space cap and a timeout."""

import json
import shutil
import subprocess
import sys

import pytest

from conftest import run_cli
from hf_models import byte_fallback_tokenizer, write_chat_model, write_model

CAP = 2 << 30  # beyond what the interpreter maps with torch imported
SECONDS = 90  # the probe waited 120 s for what is now refused in a second or five


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("hostile") / "llama", "llama")


@pytest.fixture(scope="module")
def chatml_dir(tmp_path_factory):
    return write_chat_model(tmp_path_factory.mktemp("hostile") / "chatml", "chatml")


def copy(source, tmp_path, name="model"):
    return shutil.copytree(source, tmp_path / name)


def with_config(directory, **changes):
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


CAPPED = """
import contextlib, io, json, resource, sys, traceback
import torch
mapped = int(open('/proc/self/status').read().split('VmSize:')[1].split()[0])
cap = mapped * 1024 + int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
from minigpt.cli.main import main
for line in sys.stdin:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(json.loads(line))
        except BaseException:  # a crash is what the tests look for: reported, not hidden
            code = 99
            err.write(traceback.format_exc())
    print(json.dumps({"code": code, "stderr": err.getvalue()}), flush=True)
"""


class CappedCLI:
    """``minigpt ARGS`` in one fresh interpreter whose address space is capped at what it
    maps with torch imported + ``cap``; each command within SECONDS (torch is imported
    once for all the module's cases, not once a case)."""

    def __init__(self, cap: int = CAP):
        self.cap, self.process = cap, None

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", CAPPED, str(self.cap)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)

    def __call__(self, *args) -> subprocess.CompletedProcess:
        import select

        if self.process is None or self.process.poll() is not None:
            self.start()
        self.process.stdin.write(json.dumps([*map(str, args), "--device", "cpu"]) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], SECONDS)
        line = self.process.stdout.readline() if ready else ""
        if not line:  # past the time, or the process died (killed for memory?): fail
            self.close()
            raise AssertionError(f"no answer within {SECONDS} s to minigpt {args}")
        result = json.loads(line)
        return subprocess.CompletedProcess(args, result["code"], "", result["stderr"])

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture(scope="module")
def capped():
    cli = CappedCLI()
    yield cli
    cli.close()


def refused(result, fragment, code=2):
    err = result.stderr
    assert result.returncode == code, (result.returncode, err[-3000:])
    assert "Traceback" not in err and err.count("\n") == 1, err[-3000:]
    assert fragment in err, err
    return err


def messages_file(tmp_path, content: str, name="m.json"):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


CHAT = '[{"role": "user", "content": "hi"}]'


# 1 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("layers", [100_000, 1_000_000])
def test_an_absurd_layer_count_is_refused_before_building(capped, llama_dir, tmp_path, layers):
    directory = with_config(copy(llama_dir, tmp_path), num_hidden_layers=layers)
    refused(capped("trace", directory, "--prompt", "the cat"),
            f"num_hidden_layers is {layers:,} but the tensors hold 2 layers")


def test_a_gpt2_layer_count_is_checked_too(capped, tmp_path):
    directory = with_config(write_model(tmp_path / "gpt2", "gpt2"), n_layer=50_000)
    refused(capped("inspect", directory), "n_layer is 50,000 but the tensors hold 2 layers")


# 2 -----------------------------------------------------------------------------------

def test_token_text_is_never_rich_markup(tmp_path, capsys):
    """An added token "[/]" raised MarkupError; "[link=…]" made trace emit an OSC 8
    hyperlink; "[bold red]" styled the output. Token text is data everywhere."""
    directory = write_model(tmp_path / "gpt2", "gpt2")
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    hostile = ["[/]", "[link=https://evil.example/]CLICK[/link]", "[bold red]RED[/]"]
    tokenizer.add_tokens(hostile)
    tokenizer.save(str(directory / "tokenizer.json"))
    with_config(directory, vocab_size=400)  # room for the new ids: the embedding is 300
    import torch
    from safetensors.torch import load_file, save_file

    weights = load_file(directory / "model.safetensors")
    wte = weights["transformer.wte.weight"]
    weights["transformer.wte.weight"] = torch.cat([wte, wte[:100]])
    save_file(weights, directory / "model.safetensors", metadata={"format": "pt"})
    code, out, err = run_cli(capsys, "score", directory, "--text", "the " + " ".join(hostile))
    assert code == 0, err
    for token in hostile:
        assert repr(token) in out  # shown as text, whole
    assert "\x1b" not in out


# 3 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, fragment", [
    ("merges.txt", "merges.txt: 400 MiB is over the 32 MiB a merges.txt may hold"),
    ("tokenizer.json", "MiB a tokenizer.json may hold"),
])
def test_huge_tokenizer_files_are_refused_before_reading(capped, tmp_path, name, fragment):
    directory = write_model(tmp_path / "gpt2", "gpt2")
    if name == "merges.txt":  # the GPT-2 copies' two files instead of tokenizer.json
        (directory / "tokenizer.json").unlink()
        (directory / "vocab.json").write_text('{"a": 0}')
    with open(directory / name, "ab") as f:
        f.truncate(400 << 20)  # sparse: 400 MB on paper
    refused(capped("trace", directory, "--prompt", "the cat"), fragment)


def test_a_tokenizer_the_library_cannot_read_is_one_line(capped, tmp_path):
    directory = write_model(tmp_path / "gpt2", "gpt2")
    (directory / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": 3}}')
    refused(capped("trace", directory, "--prompt", "the cat"), "not a readable tokenizer.json")


# 4 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("template, fragment", [
    ("{{ 'x' * 10**8 }}", "builds a text too large"),
    ("{{ 'x'|center(10**9) }}", "asks for a size too large"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "did not finish in 5 s"),
    ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
     "{{ f(60) }}", "did not finish in 5 s"),
    ("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
     "{% endfor %}{{ ns.s }}", "MB of memory"),
    ("{{ ((2**1024)**1024)**1024 }}", "computes a number too large"),
    ("{{ '%999999999s' % '' }}", "asks for a size too large"),
    ("{{ '{:>999999999}'.format('') }}", "asks for a size too large"),
], ids=["repeat", "filter", "loops", "macro", "doubling", "power", "percent", "format"])
def test_templates_that_never_end_or_explode_are_refused(capped, chatml_dir, tmp_path, template,
                                                        fragment):
    directory = copy(chatml_dir, tmp_path)
    (directory / "chat_template.jinja").write_text(template)
    refused(capped("trace", directory, "--messages", messages_file(tmp_path, CHAT),
                   "--max-new-tokens", 1), fragment)


def test_a_huge_template_leaves_raw_text_and_says_why(capped, chatml_dir, tmp_path):
    directory = copy(chatml_dir, tmp_path)
    with open(directory / "chat_template.jinja", "ab") as f:
        f.truncate(200 << 20)
    refused(capped("trace", directory, "--messages", messages_file(tmp_path, CHAT)),
            "the chat template cannot be used")
    result = capped("trace", directory, "--prompt", "the cat", "--max-new-tokens", 1)
    assert result.returncode == 0, result.stderr  # raw text still works


# 5 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("content, fragment", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('[{"role": "user", "content": "a\\ud800b"}]', "lone surrogate U+D800 at character 1"),
    (json.dumps([{"role": "user", "content": "hi"}] * 100_000),
     "100,000 messages, over the 10,000"),
    (json.dumps([{"role": "user", "content": "x" * 3_900_000}]), "the conversation renders to"),
], ids=["deep", "surrogate", "many", "huge"])  # short ids: pytest puts them in the environment
def test_hostile_messages_are_one_line_quickly(capped, chatml_dir, tmp_path, content, fragment):
    refused(capped("trace", chatml_dir, "--messages", messages_file(tmp_path, content),
                   "--max-new-tokens", 1), fragment)


# 6 -----------------------------------------------------------------------------------

def hub_cache(tmp_path, source, ref: bytes | None = None):
    root = tmp_path / "models--org--name"
    shutil.copytree(source, root / "snapshots" / "abc123")
    (root / "refs").mkdir()
    if ref is not None:
        (root / "refs" / "main").write_bytes(ref)
    return root


@pytest.mark.parametrize("ref", [b"../../elsewhere", b"/etc", b"..", b"abc/../../x",
                                 b"a" * 300], ids=["up", "absolute", "dots", "inside-up",
                                                   "long"])
def test_a_hub_revision_is_a_short_name_inside_snapshots(capped, llama_dir, tmp_path, ref):
    outside = copy(llama_dir, tmp_path, "elsewhere")
    assert outside.is_dir()
    refused(capped("inspect", hub_cache(tmp_path, llama_dir, ref)), "not a revision name")


def test_a_huge_refs_main_is_not_read_whole(llama_dir, tmp_path):
    root = hub_cache(tmp_path, llama_dir, b"")
    with open(root / "refs" / "main", "ab") as f:
        f.truncate(1536 << 20)
    small = CappedCLI(256 << 20)  # reading 1.5 GB whole would not fit
    try:
        refused(small("inspect", root), "not a revision name")
    finally:
        small.close()


def test_a_snapshot_that_leads_outside_is_refused(capped, llama_dir, tmp_path):
    root = hub_cache(tmp_path, llama_dir, b"abc123")
    (root / "snapshots" / "def456").symlink_to(copy(llama_dir, tmp_path, "elsewhere"))
    (root / "refs" / "main").write_text("def456")
    refused(capped("inspect", root), "leads outside the cache folder")


def test_a_good_hub_cache_still_opens(llama_dir, tmp_path, capsys):
    code, out, err = run_cli(capsys, "inspect", hub_cache(tmp_path, llama_dir, b"abc123\n"))
    assert code == 0 and "snapshots/abc123" not in err


# 7 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, fragment", [
    ({"rope_theta": 0}, "rope_theta must be a finite number > 0, got 0"),
    ({"rope_theta": float("nan")}, "rope_theta must be a finite number > 0, got nan"),
    ({"rope_theta": -500}, "rope_theta must be a finite number > 0, got -500"),
    ({"rope_theta": float("inf")}, "rope_theta must be a finite number > 0, got inf"),
    ({"rope_parameters": {"rope_type": "default", "rope_theta": "big"}},
     "rope_theta must be a finite number > 0, got 'big'"),
    ({"rms_norm_eps": -1e-6}, "rms_norm_eps must be a finite number ≥ 0, got -1e-06"),
])
def test_nonsense_numbers_are_named(llama_dir, tmp_path, changes, fragment, capsys):
    directory = copy(llama_dir, tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config.pop("rope_parameters", None)
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))
    code, out, err = run_cli(capsys, "trace", directory, "--prompt", "the cat")
    assert code == 2 and fragment in err and len(err.splitlines()) == 1, err


# 11 ----------------------------------------------------------------------------------

def test_byte_fallback_pieces_listed_as_special_are_bytes(tmp_path):
    from minigpt.text.hf_tokenizer import load_hf_tokenizer
    from minigpt.text.tokenizer import show_token

    tokenizer = byte_fallback_tokenizer()
    tokenizer.add_special_tokens([f"<0x{b:02X}>" for b in range(256)])
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    ours = load_hf_tokenizer(tmp_path)
    piece = tokenizer.token_to_id("<0xA6>")
    assert ours.token_bytes(piece) == b"\xa6" and ours.special_name(piece) is None
    assert show_token(ours, piece) == "‹a6›"  # it showed ‹<0xA6>›


# 12 ----------------------------------------------------------------------------------

def test_a_template_that_is_not_utf8_leaves_raw_text_like_one_that_does_not_parse(
        chatml_dir, tmp_path, capsys):
    directory = copy(chatml_dir, tmp_path)
    (directory / "chat_template.jinja").write_bytes(b"{{ messages }}\xff\xfe")
    code, out, err = run_cli(capsys, "inspect", directory, "--json")
    assert code == 0, err  # it refused the whole model
    assert any("not UTF-8" in note and "raw text only" in note
               for note in json.loads(out)["inferred"])
    code, out, err = run_cli(capsys, "trace", directory, "--messages",
                             messages_file(tmp_path, CHAT))
    assert code == 2 and "the chat template cannot be used" in err and "not UTF-8" in err


def test_a_long_chat_drops_its_earliest_turns_at_a_user_message():
    """The explorer's chat past the bound: early messages go, a system message stays, and
    the conversation still starts with the user (templates that want roles to alternate
    refuse one that starts with the assistant)."""
    from minigpt.errors import PromptError
    from minigpt.text.chat import CONVERSATION_FLOOR, fit_conversation

    def render(messages):
        roles = [m["role"] for m in messages]
        if roles[roles[0] == "system":][0] != "user":
            raise PromptError("roles must alternate user/assistant")
        return "".join(m["content"] for m in messages)

    long = "x" * (CONVERSATION_FLOOR // 3)
    messages = [{"role": "system", "content": "sys"}]
    for _ in range(4):
        messages += [{"role": "user", "content": long}, {"role": "assistant", "content": long}]
    messages.append({"role": "user", "content": "last"})
    text, dropped = fit_conversation(messages, render, 16, drop=True)
    assert dropped % 2 == 0 and 0 < dropped < len(messages) - 1
    assert text.startswith("sys" + long) and len(text) <= CONVERSATION_FLOOR
    with pytest.raises(PromptError, match="leave out its earliest messages"):
        fit_conversation(messages, render, 16, drop=False)  # the CLI: the numbers, refused
    with pytest.raises(PromptError, match="the system message and the last user message"):
        fit_conversation([messages[0], {"role": "user", "content": long * 4}], render, 16,
                         drop=True)


# GGUF files ------------------------------------------------------------------------

def gguf_bytes(entries: list[tuple[str, int, bytes]], tensors: int = 0, entry_count=None,
               infos: bytes = b"") -> bytes:
    """A GGUF v3 header: ``entries`` as (key, value type, value bytes), then ``infos``."""
    import struct

    out = b"GGUF" + struct.pack("<IQQ", 3, tensors, len(entries) if entry_count is None
                                else entry_count)
    for key, kind, value in entries:
        out += struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", kind) + value
    return out + infos


def gguf_string(text: str) -> bytes:
    import struct

    return struct.pack("<Q", len(text.encode())) + text.encode()


def tensor_info(name: str, dims: tuple[int, ...], kind: int, offset: int) -> bytes:
    import struct

    return gguf_string(name) + struct.pack("<I", len(dims)) + \
        b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", kind, offset)


ARCH = ("general.architecture", 8, gguf_string("llama"))


def hostile_ggufs() -> dict[str, tuple[bytes, str]]:
    import struct

    return {
        "tensor count": (gguf_bytes([ARCH], tensors=1 << 40), "more than the file can hold"),
        "entry count": (gguf_bytes([ARCH], entry_count=1 << 40), "more than the file can hold"),
        "string past the file": (gguf_bytes([("general.name", 8, struct.pack("<Q", 1 << 40))]),
                                 "a GGUF metadata string claims"),
        "array count": (gguf_bytes([("tokenizer.ggml.tokens", 9,
                                     struct.pack("<IQ", 8, 1 << 35))]),
                        "a GGUF metadata array claims"),
        "metadata type": (gguf_bytes([("x", 77, b"")]), "unknown GGUF metadata type 77"),
        "quant type": (gguf_bytes([ARCH], tensors=1, infos=tensor_info("token_embd.weight",
                                                                        (4, 4), 999, 0)),
                       "not a readable GGUF file"),
        "offset past the file": (gguf_bytes([ARCH], tensors=1, infos=tensor_info(
            "token_embd.weight", (4, 4), 0, 1 << 40)), "not a readable GGUF file"),
        "version": (b"GGUF" + struct.pack("<IQQ", 99, 0, 0), "GGUF version 99"),
    }


@pytest.mark.parametrize("case", list(hostile_ggufs()))
def test_a_hostile_gguf_is_one_line_in_bounded_memory(capped, tmp_path, case):
    content, fragment = hostile_ggufs()[case]
    path = tmp_path / "hostile.gguf"
    path.write_bytes(content + bytes(64))
    refused(capped("inspect", path), fragment)


def test_a_truncated_gguf_is_one_line(capped, tmp_path):
    from gguf_models import write_gguf

    path = write_gguf(tmp_path / "whole.gguf", "llama", "Q8_0")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    refused(capped("inspect", cut), "cut.gguf")
