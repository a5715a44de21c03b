"""Device choice: ``auto`` = cuda, then mps, then cpu."""

from __future__ import annotations

import os

import torch

from .errors import SettingsError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(name: str) -> torch.device:
    name = (name or "auto").strip().lower()
    kind = name.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise SettingsError(f"unknown device {name!r}: choose one of {', '.join(DEVICE_CHOICES)}")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise SettingsError("device cuda was asked for, but no CUDA GPU is available here")
    if kind == "mps" and not mps_available():
        raise SettingsError("device mps was asked for, but Apple MPS is not available here")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise SettingsError(f"unknown device {name!r}") from exc


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory instead of unmapping it (Linux only).

    A training step on the CPU allocates and frees several logits-sized blocks
    (batch × context × ~100k vocabulary floats, hundreds of MB each). glibc
    serves blocks that large with fresh mmaps, so every step page-faults them in
    again: measured, that was half of each step. Keeping the heap roughly halves
    step time. Returns whether the setting took.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (e.g. musl): nothing to tune
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**30))


def leave_a_core_free() -> int:
    """Use one intra-op thread fewer than there are cores (at least one); returns the count.

    An interactive front end runs its UI thread beside the torch worker. On a small
    machine torch's default (a thread per core) makes its parallel regions wait on
    the core the UI is using; measured on 2 cores, one torch thread streamed 20-30%
    more tokens through the app than two.
    """
    cores = os.cpu_count() or 1
    threads = max(1, min(torch.get_num_threads(), cores - 1))
    torch.set_num_threads(threads)
    return threads
