"""Messages that say what happened: a refusal for safety only where something was
refused, a damaged file as damaged, a symlink loop as a loop, no file content echoed,
no sentence cut in the middle, out of memory in words, and no vocabulary read from
outside the checkpoint's folders."""

import pickle
from pathlib import Path

import pytest

from minigpt.cli.main import main
from minigpt.errors import OUT_OF_MEMORY, clip, out_of_memory


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_a_global_after_megabytes_of_padding_is_refused_for_safety(tmp_path, capsys):
    padded = tmp_path / "padded.ckpt"
    padded.write_bytes(b"S'" + b"a" * (2 << 20) + b"'\n0" + b"cos\nsystem\n(S'echo hi'\ntR.")
    assert main(["inspect", str(padded)]) == 2
    err = one_line(capsys)
    assert "refused for safety" in err and "os.system" in err


def test_a_truncated_meta_pkl_is_damaged_not_refused(tmp_path, capsys):
    meta = tmp_path / "meta.pkl"
    meta.write_bytes(pickle.dumps({"stoi": {"a": 0}, "itos": {0: "a"}})[:-5])
    from minigpt.errors import TokenizerError
    from minigpt.text.vocab import read_meta_pkl
    with pytest.raises(TokenizerError) as caught:
        read_meta_pkl(meta)
    assert "truncated or damaged" in str(caught.value) and "safety" not in str(caught.value)


def test_a_symlink_loop_is_named_a_loop(tmp_path, capsys):
    loop = tmp_path / "loop.ckpt"
    loop.symlink_to(loop)
    assert main(["inspect", str(loop)]) == 2
    assert "symbolic link that leads nowhere" in one_line(capsys)


def test_a_tokenizer_file_s_content_is_never_echoed(tmp_path, tiny_ckpt, capsys):
    secret = tmp_path / "passwd"
    secret.write_text("root:SECRET-HASH:0:0:root:/root:/bin/bash\n")
    assert main(["generate", str(tiny_ckpt), "--tokenizer", str(secret), "--prompt", "hi",
                 "--device", "cpu"]) == 2
    err = one_line(capsys)
    assert "not a .tiktoken vocabulary" in err and "SECRET" not in err


def test_long_messages_end_at_a_word_with_an_ellipsis():
    text = "word " * 100
    clipped = clip(text, 40)
    assert clipped.endswith(" …") and len(clipped) <= 42 and "wor …" not in clipped
    assert clip("short one") == "short one"


def test_out_of_memory_is_said_in_words():
    raw = RuntimeError("[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: "
                       "not enough memory: you tried to allocate 3600000000 bytes.")
    assert out_of_memory(raw) and out_of_memory(MemoryError())
    assert not out_of_memory(RuntimeError("shape mismatch"))
    assert OUT_OF_MEMORY.startswith("the engine ran out of memory: try")
    from tui.client import last_line
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as log:
        log.write(f"Traceback …\nRuntimeError: {raw}\n")
    assert last_line(log.name) == OUT_OF_MEMORY
    Path(log.name).unlink()


def test_a_nanogpt_dataset_outside_its_folders_is_not_read(tmp_path):
    """config.dataset "/that/path" loaded /that/path/meta.pkl."""
    from minigpt.text.vocab import _meta_candidates

    ckpt = tmp_path / "out" / "ckpt.pt"
    for dataset in ("/etc", "../../elsewhere"):
        assert _meta_candidates(ckpt, dataset) == [ckpt.parent.resolve() / "meta.pkl"]
    assert (ckpt.parent.resolve() / "data" / "shakespeare_char" / "meta.pkl") in \
        _meta_candidates(ckpt, "shakespeare_char")
