"""The explorer's header line: the checkpoint, its size, device and precision (with
--compare: who drives and both names), fitted to the screen's width."""

from __future__ import annotations

from pathlib import Path

from rich.cells import cell_len

from minigpt.text.tokenizer import printable

from .replies import human_count
from .lines import OneLine


class HeaderMixin:
    """``show_header`` for ``MiniGPTApp``; call it whenever what it says or the width
    changes."""

    def show_header(self) -> None:
        """The header line; where it does not fit, the checkpoint's folders go first, then
        the program's name (who drives, the device and the precision matter more)."""
        room = self.size.width - 2  # the header's padding
        for checkpoint in (self.checkpoint, Path(self.checkpoint).name):
            text = self.header_text(printable(checkpoint))
            if not 0 < room < cell_len(text):
                break
        else:
            text = text.removeprefix("minigpt-tui · ")
        self.query_one("#header", OneLine).update(text)

    def header_text(self, checkpoint: str) -> str:
        """What the header says; a mark while turns wait for the session file to take them
        (a toast would be gone in seconds, the turns not)."""
        text = self.model_text(checkpoint)
        if self.recorder is not None and self.recorder.unsaved:
            text += f" · ✗ {len(self.recorder.unsaved)} unsaved"
        return text

    def model_text(self, checkpoint: str) -> str:
        info = self.info
        if info is None:
            return f"minigpt-tui · {checkpoint} · loading model … ({self.loading_stage})"
        if self.compare:
            return self.compare_header(info)
        if info.backend == "served":  # the server names its model and file type
            return f"minigpt-tui · {printable(info.where)}"
        return f"minigpt-tui · {checkpoint} · {human_count(info.parameters)} params · {info.where}"
