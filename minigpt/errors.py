"""User-facing errors: each carries one line that says what is wrong and what to do."""


class MiniGPTError(Exception):
    """A user mistake or a bad file: shown as one line, never as a traceback."""


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
