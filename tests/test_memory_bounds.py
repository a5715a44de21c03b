"""Hostile files cost bounded memory and one line: a huge junk file, a zip bomb and
tensors whose shape claims more than their storage holds, each under a 2 GiB
address-space cap (``RLIMIT_AS``) in a fresh interpreter."""

import io
import subprocess
import sys
import zipfile

import pytest
import torch

from conftest import write_book_checkpoint

CAP = 2 << 30  # what the process may take beyond itself with torch imported


def inspect_capped(path) -> subprocess.CompletedProcess:
    """``minigpt inspect`` with the address space capped at what the interpreter maps
    once torch is imported + 2 GiB (a CUDA build of torch alone maps more than 2 GiB)."""
    code = ("import resource, sys\n"
            "import torch\n"
            "mapped = int(open('/proc/self/status').read().split('VmSize:')[1].split()[0])\n"
            f"cap = max({CAP}, mapped * 1024 + {CAP})\n"
            "resource.setrlimit(resource.RLIMIT_AS, (cap, cap))\n"
            "from minigpt.cli.main import main\n"
            "sys.exit(main(['inspect', sys.argv[1], '--device', 'cpu']))")
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, timeout=300)


def one_line_refusal(result, fragment):
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    assert result.stderr.count("\n") == 1 and fragment in result.stderr


def test_a_3_gib_junk_file_is_refused_within_the_cap(tmp_path):
    junk = tmp_path / "junk.ckpt"
    with open(junk, "wb") as f:  # sparse: 3 GiB on paper, a few bytes on disk
        f.write(b"\x80\x02}q\x00(X\x05\x00\x00\x00hello" + bytes(range(256)) * 16)
        f.truncate(3 << 30)
    one_line_refusal(inspect_capped(junk), "junk.ckpt")


def test_a_zip_bomb_is_refused_before_inflating(tmp_path):
    bomb = tmp_path / "bomb.ckpt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("archive/data.pkl", "w", force_zip64=True) as member:
            chunk = bytes(1 << 20)
            for _ in range(300):  # 300 MB of zeros, about 300 KB on disk
                member.write(chunk)
    assert bomb.stat().st_size < 2 << 20
    one_line_refusal(inspect_capped(bomb), "zip bomb")


def test_stride_0_tensors_claiming_gigabytes_are_refused(tmp_path, tiny_hp):
    path = write_book_checkpoint(tmp_path / "ok.ckpt", tiny_hp)
    ckpt = torch.load(path, weights_only=True)
    sd = ckpt["model_state_dict"]
    name = "transformer_blocks.0.mha.heads.0.mask"
    sd[name] = torch.ones(1).expand(60_000, 60_000)  # 14 GB as floats, 4 bytes stored
    ckpt["h_params"] = {**tiny_hp, "context_length": 60_000}
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    lying = tmp_path / "lying.ckpt"
    lying.write_bytes(buffer.getvalue())
    assert lying.stat().st_size < 30 << 20
    one_line_refusal(inspect_capped(lying), "stride 0")


def test_a_decoy_tensor_cannot_make_the_masks_take_the_machine(tmp_path, tiny_hp):
    """context_length 30000 plus an unused [30000] tensor passed the h_params' size check;
    the [C, C] masks then took 3.9 GB (all 24 GB without a cap)."""
    path = write_book_checkpoint(tmp_path / "ok.ckpt", tiny_hp)
    ckpt = torch.load(path, weights_only=True)
    ckpt["model_state_dict"]["decoy"] = torch.zeros(30_000)
    ckpt["h_params"] = {**tiny_hp, "context_length": 30_000}
    decoy = tmp_path / "decoy.ckpt"
    torch.save(ckpt, decoy)
    one_line_refusal(inspect_capped(decoy), "do not describe these weights")


@pytest.mark.parametrize("name", ["fifo", "dev-zero"])
def test_fifos_and_devices_are_refused_at_once(tmp_path, name, capsys):
    import os
    from minigpt.cli.main import main
    path = tmp_path / "fifo"
    if name == "fifo":
        os.mkfifo(path)
    else:
        path = "/dev/zero"
    assert main(["inspect", str(path), "--device", "cpu"]) == 2
    assert "not a regular file" in capsys.readouterr().err
    ckpt_args = ["generate", "--prompt", "x", "--device", "cpu", "--tokenizer", str(path)]
    assert main(ckpt_args) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_loading_stays_within_its_memory_budget(tiny_ckpt):
    """The stated budget: loading adds at most 2× the checkpoint's tensor bytes (as
    float32) + 300 MB to the peak RSS of an interpreter that has imported torch (the
    vocabulary and the decoder's layouts included)."""
    code = (
        "import resource, sys, warnings\n"
        "warnings.filterwarnings('ignore')\n"
        "import torch\n"
        "from minigpt.models.checkpoint import load\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "loaded = load(sys.argv[1], device='cpu')\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "sd = torch.load(sys.argv[1], weights_only=True)['model_state_dict']\n"
        "print(base * 1024, peak * 1024, sum(t.numel() * 4 for t in sd.values()))\n")
    result = subprocess.run([sys.executable, "-c", code, str(tiny_ckpt)], capture_output=True,
                            text=True, timeout=300, check=True)
    base, peak, tensor_bytes = map(int, result.stdout.split()[-3:])
    assert peak - base <= 2 * tensor_bytes + (300 << 20), (peak - base) / 2**20
