"""The sidebar: one compact input per sampling knob, validated as typed.

An invalid value is marked and not applied; the last good value stays in force.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label

from minigpt.errors import SettingsError
from minigpt.settings import SamplingSettings

UNSET = ("", "-", "—", "none", "off")


def parse_optional_int(text: str) -> int | None:
    return None if text.strip().lower() in UNSET else int(text)


def parse_optional_float(text: str) -> float | None:
    return None if text.strip().lower() in UNSET else float(text)


@dataclass(frozen=True)
class Knob:
    field: str  # SamplingSettings attribute
    label: str
    parse: Callable[[str], object]


KNOBS = (
    Knob("temperature", "temperature", float),
    Knob("top_k", "top_k", parse_optional_int),
    Knob("top_p", "top_p", parse_optional_float),
    Knob("max_new_tokens", "max_new", int),
    Knob("seed", "seed", parse_optional_int),
    Knob("repetition_penalty", "rep_penalty", float),
)


def show(value: object) -> str:
    return "—" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


class Sidebar(VerticalScroll):
    """Editable knobs; posts ``Sidebar.Changed`` with the new settings when valid."""

    @dataclass
    class Changed(Message):
        settings: SamplingSettings

    @dataclass
    class Invalid(Message):
        label: str
        error: str

    def __init__(self, settings: SamplingSettings, **kwargs):
        super().__init__(**kwargs)
        self.settings = settings
        self.can_focus = False

    def compose(self) -> ComposeResult:
        for knob in KNOBS:
            with Horizontal(classes="knob"):
                yield Label(knob.label, classes="knob-label")
                field = Input(show(getattr(self.settings, knob.field)), id=f"knob-{knob.field}",
                              compact=True, select_on_focus=True, classes="knob-input")
                field.cursor_blink = False
                yield field

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        knob = next(k for k in KNOBS if f"knob-{k.field}" == event.input.id)
        try:
            value = knob.parse(event.value)
            settings = self.settings.with_(**{knob.field: value})
        except (ValueError, OverflowError, SettingsError) as exc:
            event.input.add_class("invalid")
            message = str(exc) if isinstance(exc, SettingsError) else f"not a number: {event.value!r}"
            self.post_message(self.Invalid(knob.label, message))
            return
        event.input.remove_class("invalid")
        if settings != self.settings:
            self.settings = settings
            self.post_message(self.Changed(settings))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.screen.focus_next()
