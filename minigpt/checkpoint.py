"""``minigpt.checkpoint.load``, the public loading function: it lives in
``minigpt.models.checkpoint``."""

from minigpt.models.checkpoint import LoadedModel, load  # noqa: F401
