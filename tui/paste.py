"""Bracketed pastes arrive as text, whatever they hold.

Upstream cause (Textual 8.2's ``XTermParser``): inside a bracketed paste an ESC
starts an escape-sequence search whose characters are not added to the paste, and
an unknown sequence such as ``\\x1b[31m`` (colour codes copied from a terminal) is
re-issued as *key presses*; the paste then ends early, and its control characters
act as keys too (``\\x01`` = home, ``\\t`` = focus the next widget). So pasting
``农夫\\x01\\x1b[31mRED`` reordered the prompt and typed into the sidebar.

The fix filters the raw input before Textual parses it: between the paste markers,
escape sequences are removed, tabs become spaces and other control characters are
dropped, so the parser sees one clean paste. Outside pastes nothing changes.
"""

from __future__ import annotations

import re

from textual import events
from textual._xterm_parser import XTermParser

PASTE_START = "\x1b[200~"
PASTE_END = "\x1b[201~"
# CSI (ESC [ params intermediates final), OSC (ESC ] … BEL or ESC \), or ESC + one char.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[^\[\]]")
_INCOMPLETE_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*)?$")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_paste(text: str) -> str:
    """Pasted text without escape sequences or control characters (tabs as spaces;
    line breaks stay for the receiving widget to decide)."""
    text = _ESCAPES.sub("", text).replace("\t", " ").replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROLS.sub("", text)


def _partial_suffix(data: str, marker: str) -> int:
    """Length of the longest end of ``data`` that begins ``marker`` (0 if none)."""
    for n in range(min(len(marker) - 1, len(data)), 0, -1):
        if marker.startswith(data[-n:]):
            return n
    return 0


class PasteFilter:
    """Streams raw terminal input; cleans what lies between the paste markers. Text
    that may be a split marker or escape is held back until the next chunk."""

    def __init__(self) -> None:
        self.in_paste = False
        self.held = ""
        # A chunk ended in ESC, passed on at once (it may be the escape key); it may
        # also begin a paste marker that the next chunk completes.
        self.esc_sent = False

    def __call__(self, data: str) -> str:
        esc_sent, self.esc_sent = self.esc_sent, False
        data, self.held = ("\x1b" if esc_sent else "") + self.held + data, ""
        output = self._filter(data)
        if esc_sent:
            if output.startswith("\x1b"):
                output = output[1:]  # the parser has it already
            else:  # held back with what may be a marker: still sent
                self.held, self.esc_sent = self.held[1:], True
        if not self.in_paste and not self.held and output.endswith("\x1b"):
            self.esc_sent = True
        return output

    def _filter(self, data: str) -> str:
        out: list[str] = []
        while data:
            if self.in_paste:
                end = data.find(PASTE_END)
                if end < 0:
                    keep = _partial_suffix(data, PASTE_END)
                    body = data[:len(data) - keep]
                    incomplete = _INCOMPLETE_ESCAPE.search(body)
                    if incomplete:  # an escape sequence cut by the read: finish it next time
                        keep += len(body) - incomplete.start()
                        body = body[:incomplete.start()]
                    out.append(clean_paste(body))
                    self.held = data[len(data) - keep:] if keep else ""
                    break
                out.append(clean_paste(data[:end]) + PASTE_END)
                data, self.in_paste = data[end + len(PASTE_END):], False
            else:
                start = data.find(PASTE_START)
                if start < 0:
                    keep = _partial_suffix(data, PASTE_START)
                    if keep < 2:  # a lone ESC is the escape key: never hold it back
                        keep = 0
                    out.append(data[:len(data) - keep])
                    self.held = data[len(data) - keep:] if keep else ""
                    break
                out.append(data[:start + len(PASTE_START)])
                data, self.in_paste = data[start + len(PASTE_START):], True
        return "".join(out)


class PasteSafeParser(XTermParser):
    def __init__(self, debug: bool = False) -> None:
        super().__init__(debug)
        self.paste_filter = PasteFilter()

    def feed(self, data: str):
        cleaned = self.paste_filter(data)
        if data and not cleaned:
            return ()  # all held back for the next read ("" would mean end of input)
        return super().feed(cleaned)


def install() -> None:
    """Make Textual's terminal drivers parse input through ``PasteSafeParser``."""
    from textual.drivers import linux_driver

    linux_driver.XTermParser = PasteSafeParser


class PasteIntoPromptMixin:
    """For ``MiniGPTApp``: pastes that no focused field takes."""

    def on_paste(self, event: events.Paste) -> None:
        """A paste with the focus elsewhere (the table, the transcript) lands at the end
        of the prompt, which takes the focus: it was dropped without a word."""
        if self.screen is not self.screen_stack[0]:
            return  # a dialog's own fields take their pastes
        prompt = self.query_one("#prompt")
        prompt.focus()
        prompt.cursor_position = len(prompt.value)
        prompt.paste(event.text)
