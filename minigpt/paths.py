"""Where the shipped default model lives."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

CHECKOUT_MODEL = Path(__file__).resolve().parent.parent / "model" / "model.ckpt"


def default_checkpoint() -> Path:
    """``./model/model.ckpt`` from a checkout, else the copy installed with the package."""
    local = Path("model") / "model.ckpt"
    if local.is_file():
        return local
    if CHECKOUT_MODEL.is_file():
        return CHECKOUT_MODEL
    try:
        installed = resources.files("minigpt_model") / "model.ckpt"
        if installed.is_file():
            return Path(str(installed))
    except ModuleNotFoundError:
        pass
    return local  # the loader reports it missing, naming the expected path


def require_regular_file(path: Path, what: str, error=None) -> None:
    """Refuse, in one line, anything that is not a readable regular file: a missing
    path, a directory, a FIFO or a device (reading those hangs or never ends)."""
    from .errors import MiniGPTError

    error = error or MiniGPTError
    if not path.exists():
        raise error(f"{path}: no such file")
    if path.is_dir():
        raise error(f"{path}: is a directory, not a {what}")
    if not path.is_file():
        raise error(f"{path}: not a regular file (a FIFO or a device?), not a {what}")
