"""``minigpt-tui A --compare B``: the other checkpoint beside every step.

The engine process shows B every token A chose (each cropped to its own window) and
attaches a ``Versus`` to each step and preview: B's probability of A's candidates,
B's own top-5, and how far apart the two distributions are (KL, JS). Here they become
a column of the candidates table (``b`` shows B's own top-5 instead), KL/JS on the
candidates' title and the status line, and a third transcript tint. ``x`` lets the
other model drive from the next token on.
"""

from __future__ import annotations

from pathlib import Path

from minigpt.host import protocol as p
from minigpt.steps import Versus
from minigpt.text.tokenizer import printable


def divergence_text(versus: Versus) -> str:
    """KL from the driving model's distribution to the other's (it flips with x)."""
    driver = "B" if versus.other == "A" else "A"
    return f"KL({driver}‖{versus.other}) {versus.kl:.3f} JS {versus.js:.3f}"


def last_step_divergence(versus: Versus) -> str:
    """For the status line, which speaks of the step just taken (the table's title
    speaks of the row set it shows, often the next token)."""
    return f"last step {divergence_text(versus)}"


def short_names(a: str, b: str) -> tuple[str, str]:
    """The two compared checkpoints as the header shows them: file names, with their
    folder where the names alone are the same (run1/model.ckpt vs run2/model.ckpt)."""
    pa, pb = Path(a), Path(b)
    if pa.name != pb.name:
        return pa.name, pb.name
    return str(Path(pa.parent.name, pa.name)), str(Path(pb.parent.name, pb.name))


class VersusMixin:
    """Compare-mode actions and table layout for ``MiniGPTApp``."""

    compare: str | None  # the other checkpoint's path, as the user wrote it
    driver: str  # "A" or "B": the model choosing tokens
    other_top: bool  # the table shows the other model's own top-5

    @property
    def comparing(self) -> bool:
        return bool(self.compare)

    def compare_header(self, info: p.ModelInfo) -> str:
        a, b = short_names(self.checkpoint, self.compare)
        other = self.other_info
        if other is not None and other.where != info.where:  # --dtype-b, --device-b
            b = f"{b} ({other.where})"
        return (f"minigpt-tui · {self.driver} drives · A {printable(a)} vs B {printable(b)} · "
                f"{info.where}")

    def tint_modes(self) -> tuple[str, ...]:
        return ("", "probability", "divergence") if self.comparing else ("", "probability")

    def table_arguments(self, candidates, chosen_id, completions, versus: Versus | None):
        """What the candidates table shows: the driver's candidates with the other's
        probability of each, or (``b``) the other's own top-5 with the driver's."""
        if versus is None:  # a server's: the raw model's probabilities, not the sampler's
            raw = self.info is not None and self.info.capabilities.own_sampler
            return (candidates, chosen_id, completions, None, ("raw p" if raw else "prob", ""))
        driver = "A" if versus.other == "B" else "B"
        if self.other_top:
            return (versus.top, chosen_id, None, versus.top_driver_probs, (versus.other, driver))
        return (candidates, chosen_id, completions, versus.probs, (driver, versus.other))

    def action_swap_models(self) -> None:
        if not self.comparing:
            self.set_status("x swaps the models compared: start with --compare B")
            return
        if not self.turn.prompt:
            self.set_status("type a prompt first; x then lets the other model drive")
            return
        # A run goes on with the other model from its next token: the swap stops it
        # (ops run in order), and the run is asked for again behind it.
        resume = self.running and self.last_run_seq > self.last_done
        self.submit(p.SwapModels)
        if resume:
            self.step_or_go(None)

    def action_toggle_other_top(self) -> None:
        if not self.comparing:
            self.set_status("b shows model B's top-5: start with --compare B")
            return
        self.other_top = not self.other_top
        self.refresh_candidates()
        other = "A" if self.driver == "B" else "B"
        self.set_status(f"table: {other}'s own top-5, {self.driver}'s probability beside "
                        f"(b: back)" if self.other_top else
                        f"table: {self.driver}'s candidates, {other}'s probability beside")
