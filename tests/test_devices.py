"""Device choice and thread count."""

import sys

import pytest
import torch

from minigpt import devices
from minigpt.errors import SettingsError


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("cores, before, expected", [(2, 2, 1), (1, 1, 1), (8, 8, 7), (8, 4, 4)])
def test_leave_a_core_free(monkeypatch, restore_threads, cores, before, expected):
    monkeypatch.setattr(devices.os, "cpu_count", lambda: cores)
    torch.set_num_threads(before)
    assert devices.leave_a_core_free() == expected == torch.get_num_threads()


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
