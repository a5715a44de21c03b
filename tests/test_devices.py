"""Device choice and thread count."""

import sys

import pytest
import torch

from minigpt.models import devices
from minigpt.errors import SettingsError


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("cores, expected", [(1, 1), (2, 1), (4, 1), (8, 2), (16, 4), (64, 4)])
def test_decode_threads_by_measurement(cores, expected):
    assert devices.decode_threads(13_000_000, cores) == expected


@pytest.mark.parametrize("cores, expected", [(1, 1), (2, 2), (4, 3), (16, 8)])
def test_batch_threads(cores, expected):
    assert devices.batch_threads(cores) == expected


def test_threads_flag_overrides_the_policy(capsys, tiny_ckpt, restore_threads):
    from minigpt.cli.main import main
    assert main(["generate", str(tiny_ckpt), "--prompt", "hi", "--max-new-tokens", "2",
                 "--device", "cpu", "--threads", "2"]) == 0
    assert torch.get_num_threads() == 2
    assert main(["generate", str(tiny_ckpt), "--prompt", "hi", "--max-new-tokens", "2",
                 "--device", "cpu"]) == 0
    assert torch.get_num_threads() == devices.decode_threads()  # the measured policy
    assert main(["generate", str(tiny_ckpt), "--prompt", "hi", "--threads", "0"]) == 2


def test_auto_is_cpu_without_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "mps_available", lambda: False)
    assert devices.resolve_device("auto").type == "cpu"


@pytest.mark.parametrize("name", ["tpu", "cuda"] if not torch.cuda.is_available() else ["tpu"])
def test_unavailable_or_unknown_device_is_a_clear_error(name):
    with pytest.raises(SettingsError):
        devices.resolve_device(name)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_keep_freed_memory_applies_on_linux():
    assert devices.keep_freed_memory() is True
