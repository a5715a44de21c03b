"""The book's model, where the book's ``inference.py`` imports it from
(``from minigpt.model import Model``): it lives in ``minigpt.models.book``."""

from minigpt.models.book import *  # noqa: F401,F403
from minigpt.models.book import Model  # noqa: F401
