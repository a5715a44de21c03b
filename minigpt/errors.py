"""User-facing errors: each carries one line that says what is wrong and what to do."""


class MiniGPTError(Exception):
    """A user mistake or a bad file: shown as one line, never as a traceback."""

    exit_code = 2  # the CLI's status: 2 for what the user gave, 1 for a fault elsewhere


class CheckpointError(MiniGPTError):
    """The checkpoint file is missing, damaged, unsafe or of an unknown layout."""


class PromptError(MiniGPTError):
    """The prompt cannot be run through this model."""


class SettingsError(MiniGPTError):
    """A sampling knob or option has a value that makes no sense."""


class TokenizerError(MiniGPTError):
    """No vocabulary is available offline for this model."""


class GenerationError(MiniGPTError):
    """The model produced something we cannot sample from (NaN/Inf logits)."""


def clip(text: str, limit: int = 300) -> str:
    """A message kept to one readable line: cut at a word, with an ellipsis, never
    mid-word (a hard cut at 160 characters ended errors mid-sentence)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " …"


def out_of_memory(exc: BaseException | str) -> bool:
    """torch's allocation failures: MemoryError, 'CUDA out of memory', or the CPU
    allocator's '[enforce fail at alloc_cpu.cpp:…] … DefaultCPUAllocator: can't allocate'
    (an exception, or the line a dead engine left in its log)."""
    text = str(exc)
    return isinstance(exc, MemoryError) or "out of memory" in text or \
        "alloc_cpu" in text or "can't allocate memory" in text


OUT_OF_MEMORY = ("the engine ran out of memory: try a shorter prompt or max_new, a smaller "
                 "model, or --dtype bfloat16")
