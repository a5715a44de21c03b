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
from minigpt.settings import MAX_NEW_TOKENS_LIMIT, SamplingSettings

UNSET = ("", "-", "—", "none", "off")
# What a field holds while a value is being typed: "" (cleared for a new value) or "-"
# (the start of a negative number). Neither is applied until enter or leaving the field:
# typing "-1" must not switch top_k off on the way to an error.
PENDING = ("", "-")


def parse_optional_int(text: str) -> int | None:
    return None if text.strip().lower() in UNSET else int(text)


def parse_optional_float(text: str) -> float | None:
    return None if text.strip().lower() in UNSET else float(text)


@dataclass(frozen=True)
class Knob:
    field: str  # SamplingSettings attribute
    label: str
    parse: Callable[[str], object]
    expects: str  # what a valid value looks like, said when one is not


OPTIONAL = (parse_optional_int, parse_optional_float)  # knobs that "—" switches off

KNOBS = (
    Knob("temperature", "temperature", float, "0 (greedy) or 0.0001…1000"),
    Knob("top_k", "top_k", parse_optional_int, "a whole number ≥ 1, or — for off"),
    Knob("top_p", "top_p", parse_optional_float, "a number in (0, 1], or — for off"),
    Knob("max_new_tokens", "max_new", int,
         f"a whole number 0…{MAX_NEW_TOKENS_LIMIT:,}"),
    Knob("seed", "seed", parse_optional_int, "a whole number ≥ 0, or — for random"),
    Knob("repetition_penalty", "rep_penalty", float, "a number 0.01…100 (1 = off)"),
)


def show(value: object) -> str:
    return "—" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def kept_value(settings: SamplingSettings, label: str) -> str:
    """The value in force for the knob labelled ``label``, as the sidebar shows it."""
    knob = next(k for k in KNOBS if k.label == label)
    return show(getattr(settings, knob.field))


def parse_knob(knob: Knob, text: str, settings: SamplingSettings) -> SamplingSettings:
    """Settings with ``knob`` set from ``text``; ``SettingsError`` says, briefly, what a
    valid value looks like."""
    try:
        return settings.with_(**{knob.field: knob.parse(text)})
    except (ValueError, OverflowError, SettingsError):
        raise SettingsError(f"{knob.label} wants {knob.expects}") from None


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
        self.said_invalid: str | None = None  # the knob the status line's ✗ is about

    def compose(self) -> ComposeResult:
        for knob in KNOBS:
            with Horizontal(classes="knob"):
                yield Label(knob.label, classes="knob-label")
                field = Input(show(getattr(self.settings, knob.field)), id=f"knob-{knob.field}",
                              compact=True, select_on_focus=True, classes="knob-input")
                field.cursor_blink = False
                yield field

    @dataclass
    class Valid(Message):
        """A field marked invalid reads as a valid value again (the one in force)."""

        label: str

    def knob_of(self, field) -> Knob | None:
        return next((k for k in KNOBS if f"knob-{k.field}" == field.id), None)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if event.value.strip() in PENDING:
            event.input.remove_class("invalid")  # decided on enter or on leaving
            return
        self.take(self.knob_of(event.input), event.input, event.value)

    def take(self, knob: Knob, field: Input, text: str) -> None:
        """Apply ``text`` when valid; else mark the field and change nothing."""
        try:
            settings = parse_knob(knob, text, self.settings)
        except SettingsError as exc:
            field.add_class("invalid")
            self.said_invalid = knob.label
            self.post_message(self.Invalid(knob.label, str(exc)))
            return
        field.remove_class("invalid")
        if settings != self.settings:
            self.settings = settings
            self.post_message(self.Changed(settings))
        elif self.said_invalid == knob.label:
            self.post_message(self.Valid(knob.label))
        self.said_invalid = None

    def on_descendant_blur(self, event) -> None:
        """Leaving a knob decides a pending value (an emptied optional knob is off),
        then shows the value in force: invalid text goes, off shows — again."""
        field = event.widget
        knob = self.knob_of(field)
        if knob is None:
            return
        if field.value.strip() in PENDING and knob.parse in OPTIONAL:
            self.take(knob, field, field.value)
        field.value = show(getattr(self.settings, knob.field))
        field.remove_class("invalid")

    def set_value(self, settings: SamplingSettings) -> None:
        """Show ``settings`` (changed elsewhere, e.g. from the command palette)."""
        self.settings = settings
        for knob in KNOBS:
            field = self.query_one(f"#knob-{knob.field}", Input)
            with field.prevent(Input.Changed):
                field.value = show(getattr(settings, knob.field))
            field.remove_class("invalid")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.screen.focus_next()
