"""Device choice: ``auto`` = cuda, then mps, then cpu."""

from __future__ import annotations

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
