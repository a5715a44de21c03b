"""What a Hugging Face directory may not do: each refusal is one line naming what is
unsupported, a hostile safetensors file included (bounded memory, nothing executed)."""

import json
import shutil
import struct

import pytest

from hf_models import write_model
from minigpt.cli.main import main


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("hf") / "llama", "llama")


def inspect_error(capsys, target) -> str:
    code = main(["inspect", str(target)])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", (code, out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def with_config(tmp_path, source, **changes):
    directory = shutil.copytree(source, tmp_path / "model")
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.mark.parametrize("changes, expected", [
    ({"architectures": ["FooForCausalLM"]}, "unsupported architecture FooForCausalLM: neither "
                                            "built in (those are GPT2LMHeadModel, "
                                            "LlamaForCausalLM"),
    ({"architectures": ["BertModel"]}, "unsupported architecture BertModel"),
    ({"rope_parameters": {"rope_type": "linear", "factor": 2.0}}, "rope scaling 'linear'"),
    ({"rope_scaling": {"type": "dynamic", "factor": 2.0}}, "rope scaling 'dynamic'"),
    ({"hidden_act": "gelu"}, "activation 'gelu' is not supported"),
    ({"num_key_value_heads": 3}, "4 attention heads do not group into 3"),
    ({"architectures": ["Qwen2ForCausalLM"], "use_sliding_window": True},
     "sliding-window attention"),
    ({"hidden_size": 48}, "mis-shaped tensors"),
])
def test_unsupported_configs_are_one_line(capsys, tmp_path, llama_dir, changes, expected):
    assert expected in inspect_error(capsys, with_config(tmp_path, llama_dir, **changes))


def test_an_untied_model_missing_its_head_says_so(capsys, tmp_path, llama_dir):
    from safetensors.torch import load_file, save_file

    directory = with_config(tmp_path, llama_dir)
    weights = load_file(directory / "model.safetensors")
    del weights["lm_head.weight"]
    save_file(weights, directory / "model.safetensors")
    assert "missing tensors: lm_head.weight" in inspect_error(capsys, directory)


def safetensors_bytes(header: dict, data: bytes, length: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


F32 = {"dtype": "F32", "shape": [2, 2]}


@pytest.mark.parametrize("content, expected", [
    (struct.pack("<Q", 10**12) + b"{}", "over the 100,000,000-byte limit"),
    (struct.pack("<Q", 5000) + b"{}", "past the end of the"),
    (b"\x01\x02", "too short to be a safetensors file"),
    (safetensors_bytes({"w": {**F32, "data_offsets": [0, 160]}}, bytes(16)),
     "not a valid safetensors file"),  # offsets past the data
    (safetensors_bytes({"w": {**F32, "data_offsets": [0, 12]}}, bytes(16)),
     "not a valid safetensors file"),  # a shape that does not match its byte range
    (safetensors_bytes({"a": {**F32, "data_offsets": [0, 16]},
                        "b": {**F32, "data_offsets": [8, 24]}}, bytes(24)),
     "not a valid safetensors file"),  # overlapping ranges
    (safetensors_bytes({"w": {"dtype": "I32", "shape": [2, 2], "data_offsets": [0, 16]}},
                       bytes(16)), "expected floating point"),
])
def test_a_hostile_safetensors_file_is_one_line(capsys, tmp_path, llama_dir, content, expected):
    directory = with_config(tmp_path, llama_dir)
    (directory / "model.safetensors").write_bytes(content)
    assert expected in inspect_error(capsys, directory)


def test_a_shard_index_cannot_point_outside(capsys, tmp_path, llama_dir):
    directory = with_config(tmp_path, llama_dir)
    (directory / "model.safetensors").unlink()
    index = {"weight_map": {"lm_head.weight": "../../etc/passwd"}}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    assert "points outside the directory" in inspect_error(capsys, directory)


class Payload:
    """A class only this module defines: unpickling it would import and run its code."""


def test_a_pickled_bin_needing_code_is_refused(capsys, tmp_path, llama_dir):
    import torch

    directory = with_config(tmp_path, llama_dir)
    (directory / "model.safetensors").unlink()
    torch.save({"x": Payload()}, directory / "pytorch_model.bin")
    assert "refused for safety" in inspect_error(capsys, directory)


def test_a_directory_without_config_still_says_what_it_is(capsys, tmp_path):
    assert "is a directory, not a checkpoint file (a Hugging Face model directory holds " \
           "config.json)" in inspect_error(capsys, tmp_path)


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.json", "generation_config.json"])
def test_a_file_of_a_model_directory_names_the_directory(capsys, llama_dir, name):
    """The real-model pass: model.safetensors said 'unknown checkpoint layout', tokenizer.json
    'not a PyTorch checkpoint'."""
    err = inspect_error(capsys, llama_dir / name)
    assert "this file belongs to a Hugging Face model directory: pass the directory " \
           f"({llama_dir})" in err


def test_a_lone_safetensors_file_asks_for_its_directory(capsys, tmp_path, llama_dir):
    lone = tmp_path / "weights.safetensors"
    shutil.copy(llama_dir / "model.safetensors", lone)
    assert "a safetensors file holds weights only: pass the model directory" in \
        inspect_error(capsys, lone)


def test_native_is_refused_for_an_architecture_without_a_decoder(capsys, tmp_path, llama_dir):
    directory = with_config(tmp_path, llama_dir, architectures=["MistralForCausalLM"])
    code = main(["inspect", str(directory), "--backend", "native"])
    err = capsys.readouterr().err
    assert code == 2 and "architecture MistralForCausalLM has no native decoder" in err
    assert "--backend hf runs it through transformers" in err
