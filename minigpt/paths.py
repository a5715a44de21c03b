"""Where the shipped default model lives, and bounded, one-line reads of small files."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

CHECKOUT_MODEL = Path(__file__).resolve().parent.parent / "model" / "model.ckpt"


def shipped_checkpoints() -> list[Path]:
    """The shipped model where it lies: in this checkout, and installed with the package."""
    found = [CHECKOUT_MODEL] if CHECKOUT_MODEL.is_file() else []
    try:
        installed = resources.files("minigpt_model") / "model.ckpt"
        if installed.is_file():
            found.append(Path(str(installed)))
    except ModuleNotFoundError:
        pass
    return found


def default_checkpoint() -> Path:
    """``./model/model.ckpt`` (where the book's train.py saves), else the shipped model."""
    local = Path("model") / "model.ckpt"
    if local.is_file():
        return local
    shipped = shipped_checkpoints()
    return shipped[0] if shipped else local  # the loader reports a missing one by name


def is_shipped(path: Path) -> bool:
    return any(path.resolve() == shipped.resolve() for shipped in shipped_checkpoints())


def unshipped_default_note(path: Path) -> str | None:
    """When no checkpoint was named and the default is a model of the current directory,
    not the shipped one: a line that says which file is used."""
    if is_shipped(path) or not path.is_file():
        return None
    return f"using {path.resolve()} (this directory's model/model.ckpt, not the shipped model)"


def require_regular_file(path: Path, what: str, error=None) -> None:
    """Refuse, in one line, anything that is not a readable regular file: a missing
    path, a directory, a FIFO or a device (reading those hangs or never ends)."""
    from minigpt.errors import MiniGPTError

    error = error or MiniGPTError
    if not path.exists():
        if path.is_symlink():
            raise error(f"{path}: a symbolic link that leads nowhere (a loop, or its target "
                        "is gone)")
        raise error(f"{path}: no such file")
    if path.is_dir():
        raise error(f"{path}: is a directory, not a {what}")
    if not path.is_file():
        raise error(f"{path}: not a regular file (a FIFO or a device?), not a {what}")


def read_bounded(stream, limit: int, what: str, error=None) -> str:
    """UTF-8 text from a binary ``stream``, refused in one line once it passes ``limit``
    bytes: at most ``limit`` + 1 bytes are ever read (``/dev/zero`` on stdin is a
    refusal, not a MemoryError)."""
    from minigpt.errors import MiniGPTError

    error = error or MiniGPTError
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise error(f"{what} is over {limit / 2**20:g} MiB: give a shorter text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} is not UTF-8 text (byte {exc.start})") from None


def read_text_file(path: Path, limit: int, what: str, error=None) -> str:
    """A regular file's UTF-8 text, refused before reading when it is over ``limit``."""
    from minigpt.errors import MiniGPTError

    error = error or MiniGPTError
    require_regular_file(path, what, error)
    if path.stat().st_size > limit:
        raise error(f"{path}: {path.stat().st_size / 2**20:,.1f} MiB is over the "
                    f"{limit / 2**20:g} MiB a {what} may hold")
    with open(path, "rb") as f:
        return read_bounded(f, limit, str(path), error)


def read_json_object(path: Path, what: str, error, limit: int = 10 * 2**20) -> dict:
    """A small JSON file that must hold an object (a model directory's configs): any
    failure is one ``error`` line naming the file."""
    import json

    try:
        value = json.loads(read_text_file(path, limit, what, error))
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: unreadable {what} ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(value, dict):
        raise error(f"{path}: {what} is not a JSON object")
    return value
