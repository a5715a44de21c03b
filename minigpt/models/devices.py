"""Device choice: ``auto`` = cuda, then mps, then cpu."""

from __future__ import annotations

import os

import torch

from minigpt.errors import SettingsError

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


# A model's default window is all its positions when their KV cache takes at most this
# share of the memory available as it loads; else the longest window that does.
KV_CACHE_SHARE = 0.25


def available_memory(device: torch.device) -> int | None:
    """Bytes free for new tensors on ``device`` now (None: unknown)."""
    if device.type == "cuda":
        try:
            return torch.cuda.mem_get_info(device)[0]
        except (RuntimeError, AssertionError):
            return None
    try:  # Linux: what the kernel would give without swapping
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # elsewhere: free pages, or all of them (macOS has no count of free ones)
        pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else None
    except (ValueError, OSError):
        pages = None
    try:
        pages = pages or os.sysconf("SC_PHYS_PAGES")
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def kv_cache_budget(device: torch.device, weights: int = 0) -> int | None:
    """Bytes a model's KV cache may take by default: ``KV_CACHE_SHARE`` of what is free
    once the model's ``weights`` (bytes, about to load) are in."""
    free = available_memory(device)
    return None if free is None else int(max(0, free - weights) * KV_CACHE_SHARE)


# --dtype: the weights' precision. Probabilities are always computed in float32 from the
# logits (the output layer's result is cast up), so a lower precision changes the model's
# numbers, not the sampler's: benchmarks/bench_dtype.py measures by how much.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name: str) -> torch.dtype:
    dtype = DTYPES.get((name or "float32").strip().lower())
    if dtype is None:
        raise SettingsError(f"unknown dtype {name!r}: choose one of {', '.join(DTYPES)}")
    return dtype


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


# Decoding one token is a few matrix-vector products per layer: thread hand-offs cost
# as much as they save, and a thread waiting for a busy core stalls every step.
# Measured with benchmarks/bench_threads.py (tok/s, idle / one core busy):
# - 2 cores, book size: 1 thread 179 / 164, 2 threads 186 / 58 (GPT-2 small alike);
# - 16 cores, book size: 1 thread 534 / 529, 4 threads 1084 / 982, 16 threads 923 / 32.
# So a quarter of the cores, at most 4: one thread on small machines, never the
# every-core default that collapses when one core is taken.


def decode_threads(num_parameters: int = 0, cores: int | None = None) -> int:
    """Threads for token-by-token decoding (the CLI's generate/trace, the engine process).
    ``num_parameters`` is kept for models big enough to want more (none measured yet)."""
    cores = cores or os.cpu_count() or 1
    return max(1, min(4, cores // 4))


def batch_threads(cores: int | None = None) -> int:
    """Threads for batched work (scoring windows of [64, V] logits), where they pay:
    every core but one, so the rest of the machine stays responsive."""
    cores = cores or os.cpu_count() or 1
    return max(1, min(8, cores - 1)) if cores > 2 else cores


def use_threads(count: int) -> int:
    torch.set_num_threads(count)
    return count
