"""The one loading function: formats, devices, dtypes, and every refusal as one line."""

import os
import pickle
import subprocess
import sys

import pytest
import torch

from conftest import write_book_checkpoint
from minigpt.models.checkpoint import check_torch_version, load
from minigpt.errors import CheckpointError, SettingsError
from reference import book_h_params, book_logits, random_book_state_dict


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_book_checkpoint_loads_in_eval_mode(tiny_ckpt, tiny_hp):
    loaded = load(tiny_ckpt, device="cpu")
    assert not loaded.model.training
    assert loaded.h_params == tiny_hp
    assert loaded.format.startswith("book")
    assert loaded.tokenizer.name == "cl100k_base"
    assert loaded.num_parameters == sum(p.numel() for p in loaded.model.parameters())


@pytest.mark.parametrize("label", ["cuda", "mps"])
def test_checkpoint_labelled_gpu_loads_on_cpu(tmp_path, label):
    hp = book_h_params(device=label, max_token_value=300)
    loaded = load(write_book_checkpoint(tmp_path / "g.ckpt", hp), device="auto")
    assert loaded.device.type in ("cpu", "cuda", "mps")
    assert loaded.h_params["device"] == label


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_loads_into_float32(tmp_path, dtype):
    hp = book_h_params(max_token_value=300)
    path = write_book_checkpoint(tmp_path / "h.ckpt", hp, dtype=dtype)
    loaded = load(path, device="cpu")
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    sd = {k: v.to(dtype).float() for k, v in random_book_state_dict(hp).items()}
    with torch.no_grad():
        ours = loaded.model(torch.tensor([[1, 2, 3]]))[0][0]
    assert torch.allclose(ours.double(), book_logits(sd, hp, [1, 2, 3]), rtol=1e-4, atol=1e-4)
    assert {t[2] for t in loaded.tensors} == {str(dtype).replace("torch.", "")}


def test_bare_book_state_dict_infers_sizes(tmp_path):
    hp = book_h_params(d_model=24, num_heads=3, num_blocks=3, context_length=10,
                       max_token_value=321)
    torch.save(random_book_state_dict(hp), tmp_path / "bare.pt")
    loaded = load(tmp_path / "bare.pt", device="cpu")
    assert {k: loaded.h_params[k] for k in ("d_model", "num_heads", "num_blocks",
                                            "context_length", "max_token_value")} == \
        {"d_model": 24, "num_heads": 3, "num_blocks": 3, "context_length": 10,
         "max_token_value": 321}
    assert any("mask" in note for note in loaded.inferred)


def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError) as e:
        load(tmp_path / "nope.ckpt")
    assert "no such file" in one_line(e)


def test_directory(tmp_path):
    with pytest.raises(CheckpointError) as e:
        load(tmp_path)
    assert "is a directory" in one_line(e)


def test_empty_file(tmp_path):
    (tmp_path / "e.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError) as e:
        load(tmp_path / "e.ckpt")
    assert "empty" in one_line(e)


def test_truncated_file(tmp_path, tiny_ckpt):
    data = tiny_ckpt.read_bytes()
    (tmp_path / "t.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        load(tmp_path / "t.ckpt")
    assert "damaged or truncated" in one_line(e)


def test_random_bytes(tmp_path):
    (tmp_path / "r.ckpt").write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError) as e:
        load(tmp_path / "r.ckpt")
    one_line(e)


def test_not_a_checkpoint(tmp_path):
    torch.save({"weights": [1, 2, 3]}, tmp_path / "x.ckpt")
    with pytest.raises(CheckpointError) as e:
        load(tmp_path / "x.ckpt")
    assert "unknown checkpoint layout" in one_line(e)
    assert "weights" in str(e.value)


def test_missing_tensor_is_named(tmp_path, tiny_hp):
    sd = random_book_state_dict(tiny_hp)
    del sd["transformer_blocks.1.ln2.bias"]
    torch.save({"model_state_dict": sd, "h_params": tiny_hp}, tmp_path / "m.ckpt")
    with pytest.raises(CheckpointError) as e:
        load(tmp_path / "m.ckpt")
    assert "missing tensors: transformer_blocks.1.ln2.bias" in one_line(e)


def test_misshaped_tensor_is_named(tmp_path, tiny_hp):
    sd = random_book_state_dict(tiny_hp)
    sd["model_out_linear_layer.bias"] = torch.zeros(7)
    torch.save({"model_state_dict": sd, "h_params": tiny_hp}, tmp_path / "m.ckpt")
    with pytest.raises(CheckpointError) as e:
        load(tmp_path / "m.ckpt")
    assert "model_out_linear_layer.bias is [7], expected [100256]" in one_line(e)


def test_absurd_h_params_allocate_nothing(tmp_path, tiny_hp):
    hp = dict(tiny_hp, d_model=2**20)
    torch.save({"model_state_dict": random_book_state_dict(tiny_hp), "h_params": hp},
               tmp_path / "a.ckpt")
    with pytest.raises(CheckpointError) as e:
        load(tmp_path / "a.ckpt")
    assert "is the size of no tensor in the file" in one_line(e)


class Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle protocol 2", "pickle protocol 4",
                                    "pickle protocol 5"])
def test_arbitrary_pickle_is_refused_and_never_runs(tmp_path, writer):
    target = tmp_path / "pwned.txt"
    obj = {"model_state_dict": Payload(str(target)), "h_params": {}}
    path = tmp_path / "evil.ckpt"
    if writer == "torch.save":
        torch.save(obj, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=int(writer[-1]))
    assert not target.exists()  # pickling calls nothing
    with pytest.raises(CheckpointError) as e:
        load(path)
    message = one_line(e)
    assert "refused for safety" in message and "io.open" in message  # what it would call
    assert not target.exists()


def test_refusal_is_one_line_on_stderr_without_torch_warnings(tmp_path):
    """torch warns about pickle protocol 4 before failing; users see only our line."""
    with open(tmp_path / "evil.ckpt", "wb") as f:
        pickle.dump({"x": Payload(str(tmp_path / "pwned"))}, f, protocol=4)
    done = subprocess.run([sys.executable, "-m", "minigpt.cli", "inspect",
                           str(tmp_path / "evil.ckpt")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "refused for safety" in done.stderr


def test_old_torch_is_refused():
    with pytest.raises(CheckpointError, match="CVE-2025-32434"):
        check_torch_version("2.5.1+cpu")
    check_torch_version("2.6.0")


def test_unknown_device(tiny_ckpt):
    with pytest.raises(SettingsError, match="unknown device 'tpu'"):
        load(tiny_ckpt, device="tpu")
