"""minigpt-tui: a Textual app over ``minigpt.engine``.

The app only consumes the engine: every operation runs in a thread worker
(``runner.EngineRunner``) that posts batched messages; state lives in reactives.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Input, Label, Static
from textual.worker import Worker, WorkerState, get_current_worker

from minigpt.checkpoint import LoadedModel
from minigpt.devices import leave_a_core_free
from minigpt.engine import Engine, Preview, Step
from minigpt.session import SessionRecorder
from minigpt.settings import SamplingSettings

from .attention import AttentionStrip
from .branches import BranchScreen
from .commands import explorer_commands
from .insights import InsightsMixin
from .knobs import Sidebar
from .messages import (Exported, RunFailed, RunFinished, StepsAdded, StepsUndone,
                       TurnStarted)
from .runner import EngineRunner, Export, Generate, Switch, Take, Undo
from .scoring import ScoreScreen
from .screens import HelpScreen, ModelScreen
from .widgets import CandidatesTable, KeyHints, StatusLine, Transcript
from .why import WhyPanel

NARROW_WIDTH = 70  # below this the sidebar hides
# While tokens stream, the candidates table redraws at most this often: a DataTable
# redraw costs the UI thread more than the rest of a frame, and nobody reads five
# rows at 30 frames/s. The transcript keeps the full frame rate; the table catches up
# when the run ends.
TABLE_SECONDS = 1 / 8


def human_count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}K" if n >= 1e3 else str(n)


class MiniGPTApp(InsightsMixin, App):
    CSS_PATH = "minigpt.tcss"
    TITLE = "minigpt-tui"
    BINDINGS = [
        Binding("ctrl+q", "quit", "quit", priority=True, id="quit"),
        Binding("f1", "help", "help", id="help"),
        Binding("escape", "escape", "stop / explore", id="escape"),
        Binding("[", "older_step", "older step", id="older-step"),
        Binding("]", "newer_step", "newer step", id="newer-step"),
        Binding("p", "toggle_tint", "tint by probability", id="tint"),
        Binding("m", "model", "model info", id="model"),
        Binding("w", "toggle_why", "why this token", id="why"),
        Binding("c", "toggle_complete", "complete characters", id="complete"),
        Binding("f2", "score", "score text", id="score"),
        Binding("t", "branches", "branch tree", id="branches"),
        Binding("a", "toggle_attention", "attention strip", id="attention"),
        Binding("comma", "attention_head(-1)", "previous head", show=False, id="head-back"),
        Binding("full_stop", "attention_head(1)", "next head", show=False, id="head-next"),
        Binding("less_than_sign", "attention_layer(-1)", "previous layer", show=False,
                id="layer-back"),
        Binding("greater_than_sign", "attention_layer(1)", "next layer", show=False,
                id="layer-next"),
        Binding("ctrl+s", "export", "export transcript", id="export"),
    ]

    running: reactive[bool] = reactive(False)
    """A worker is generating."""
    settings: reactive[SamplingSettings] = reactive(SamplingSettings, always_update=True)
    """The knobs in force (the sidebar's last valid values)."""
    view_step: reactive[int | None] = reactive(None)
    """Step shown in the candidates table while browsing history; None = the live tail."""
    tint: reactive[bool] = reactive(False)
    """Colour the transcript's tokens by their probability."""

    def __init__(self, loaded: LoadedModel, settings: SamplingSettings | None = None,
                 session_path: Path | None = None, resumed: list[dict] | None = None):
        super().__init__()
        leave_a_core_free()  # the UI thread needs a core of its own
        self.loaded = loaded
        self.engine = Engine.from_loaded(loaded, settings)
        recorder = SessionRecorder(session_path, str(loaded.path)) if session_path else None
        self.runner = EngineRunner(self.engine, recorder)
        self.resumed = resumed or []
        self.set_reactive(MiniGPTApp.settings, settings or SamplingSettings())
        self.history: list[Step] = []  # the current turn's steps, as the UI has them
        self.preview: Preview | None = None
        self.pending_ops = 0
        self.table_shown_at = 0.0  # monotonic time of the last streamed table redraw

    # --- layout ----------------------------------------------------------------

    def compose(self) -> ComposeResult:
        loaded = self.loaded
        yield Static(f"minigpt-tui · {loaded.path} · {human_count(loaded.num_parameters)} "
                     f"params · {loaded.device}", id="header", markup=False)
        with Horizontal(id="body"):
            yield Sidebar(self.settings, id="sidebar")
            with Vertical(id="main"):
                yield Transcript(id="transcript")
                yield AttentionStrip("", id="attention")
                yield WhyPanel("", id="why", markup=False)
                yield Label("", id="candidates-title", markup=False)
                yield CandidatesTable(id="candidates")
                yield StatusLine("ready · type a prompt and press enter", id="status",
                                 markup=False)
        with Horizontal(id="prompt-row"):
            yield Label("> ", id="prompt-mark")
            yield Input(placeholder="prompt, e.g. 农夫山泉 ", id="prompt", compact=True)
        yield KeyHints(KeyHints.PROMPT, id="hints")

    def on_mount(self) -> None:
        self.query_one("#prompt", Input).focus()
        transcript = self.query_one(Transcript)
        for record in self.resumed:
            transcript.add_past_turn(record)
        self.set_class(self.size.width < NARROW_WIDTH, "narrow")

    def on_resize(self, event) -> None:
        self.set_class(event.size.width < NARROW_WIDTH, "narrow")

    # --- worker ----------------------------------------------------------------

    def submit(self, op) -> None:
        """Run ``op`` in the engine worker; it cancels (within a token) what is running."""
        self.runner.cancel()
        self.running = True
        self.pending_ops += 1
        self.run_worker(partial(self._execute, op), thread=True, exclusive=True,
                        group="engine", exit_on_error=False, name=type(op).__name__)

    def _execute(self, op) -> None:
        worker = get_current_worker()
        self.runner.execute(op, self.post_message, lambda: worker.is_cancelled)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:  # a bug, not a user mistake: show it, stay alive
            error = event.worker.error
            self.show_error(f"internal error: {type(error).__name__}: {error}")
            self.running = False

    # --- messages from the worker ----------------------------------------------

    def on_turn_started(self, message: TurnStarted) -> None:
        self.history = []
        self.preview = None
        self.view_step = None
        self.query_one(Transcript).start_turn(message.prompt)

    def on_steps_added(self, message: StepsAdded) -> None:
        self.history.extend(message.steps)
        self.query_one(Transcript).add_steps(message.steps, self.engine_pending_display())
        now = time.monotonic()
        if self.view_step is None and now - self.table_shown_at >= TABLE_SECONDS:
            self.table_shown_at = now
            last = message.steps[-1]
            self.show_candidates(f"step {last.index} · chose {last.chosen.text!r}",
                                 last.candidates, last.chosen.id)
        self.set_status(f"generating · {len(self.history)} tokens · "
                        f"{message.tokens_per_second:.0f} tok/s · "
                        f"{self.position_text(self.history[-1].position + 1)}")

    def on_steps_undone(self, message: StepsUndone) -> None:
        del self.history[len(self.history) - len(message.steps):]
        self.query_one(Transcript).remove_steps(len(message.steps), self.engine_pending_display())

    def on_run_finished(self, message: RunFinished) -> None:
        self.pending_ops -= 1
        if self.pending_ops > 0:
            return  # a newer operation is queued behind this one
        self.running = False
        self.preview = message.preview
        if self.view_step is not None and self.view_step > len(self.history):
            self.view_step = None
        self.refresh_candidates()
        self.request_insights()
        if message.reason == "error":
            return  # the error stays on the status line
        rate = f" · {message.tokens_per_second:.0f} tok/s" if message.tokens_per_second else ""
        self.set_status(f"{message.reason} · {len(self.history)} tokens{rate} · "
                        f"{self.position_text(message.position)}")

    def on_run_failed(self, message: RunFailed) -> None:
        self.show_error(message.message)

    def on_exported(self, message: Exported) -> None:
        names = " and ".join(str(p) for p in message.paths)
        self.set_status(f"exported {names}")
        self.notify(f"transcript written to {names}", markup=False)

    # --- helpers -----------------------------------------------------------------

    def engine_pending_display(self) -> str:
        return self.engine.pending_display  # a plain attribute read, no torch work

    def position_text(self, position: int) -> str:
        C = self.loaded.context_length
        return f"pos {position}/{C}" if position <= C else f"pos {position} (window {C})"

    def set_status(self, text: str) -> None:
        status = self.query_one(StatusLine)
        status.remove_class("error")
        status.update(text)

    def show_error(self, text: str) -> None:
        status = self.query_one(StatusLine)
        status.add_class("error")
        status.update(f"✗ {text}")
        self.notify(text, severity="error", timeout=6, markup=False)

    def show_candidates(self, title: str, candidates, chosen_id: int | None) -> None:
        self.query_one("#candidates-title", Label).update(title)
        step, completions = self.completions
        shown = completions if self.complete_shown and step == self.view_step else None
        self.query_one(CandidatesTable).show(candidates, chosen_id, shown)

    def refresh_candidates(self) -> None:
        if self.view_step is not None:
            step = self.history[self.view_step - 1]
            self.show_candidates(f"step {step.index}/{len(self.history)} · chose "
                                 f"{step.chosen.text!r} · history ([ ])", step.candidates,
                                 step.chosen.id)
        elif self.preview is not None:
            last = f" · last chose {self.history[-1].chosen.text!r}" if self.history else ""
            self.show_candidates(f"step {self.preview.index} · next token{last}",
                                 self.preview.candidates, None)
        else:
            self.show_candidates("", (), None)

    def prompt_text(self) -> str:
        return self.query_one("#prompt", Input).value

    # --- watchers ----------------------------------------------------------------

    def watch_running(self, running: bool) -> None:
        self.set_class(running, "running")
        self.update_hints()

    def watch_view_step(self, step: int | None) -> None:
        self.query_one(Transcript).set_highlight(None if step is None else step - 1)
        if self.is_mounted:
            self.refresh_candidates()
            self.request_insights()

    def watch_tint(self, tint: bool) -> None:
        self.query_one(Transcript).set_tint(tint)

    def on_descendant_focus(self) -> None:
        self.update_hints()

    def update_hints(self) -> None:
        hints = self.query_one(KeyHints)
        if self.running:
            hints.update(KeyHints.RUNNING)
        elif isinstance(self.focused, CandidatesTable):
            hints.update(KeyHints.TABLE)
        else:
            hints.update(KeyHints.PROMPT)

    @on(Sidebar.Changed)
    def sidebar_changed(self, event: Sidebar.Changed) -> None:
        self.settings = event.settings
        self.set_status("settings applied from the next token")
        self.request_insights()

    @on(Sidebar.Invalid)
    def sidebar_invalid(self, event: Sidebar.Invalid) -> None:
        status = self.query_one(StatusLine)
        status.add_class("error")
        status.update(f"✗ {event.label}: {event.error} · last good value kept")

    # --- actions -----------------------------------------------------------------

    @on(Input.Submitted, "#prompt")
    def prompt_submitted(self, event: Input.Submitted) -> None:
        self.submit(Generate(event.value, None, self.settings))

    def action_escape(self) -> None:
        if isinstance(self.screen, (HelpScreen, ModelScreen, ScoreScreen, BranchScreen)):
            self.screen.dismiss()
        elif self.running:
            self.runner.cancel()
            self.workers.cancel_group(self, "engine")
        elif isinstance(self.focused, Input) and self.focused.id == "prompt":
            self.query_one(CandidatesTable).focus()
        else:
            self.view_step = None

    def action_step_one(self) -> None:
        self.view_step = None
        self.submit(Generate(self.prompt_text(), 1, self.settings, only_if_fresh=True))

    def action_continue_generation(self) -> None:
        self.view_step = None
        self.submit(Generate(self.prompt_text(), None, self.settings, only_if_fresh=True))

    def action_pick(self, rank: int) -> None:
        if self.view_step is not None:  # rewind to that step and take its candidate
            step = self.history[self.view_step - 1]
            candidates, keep = step.candidates, self.view_step - 1
        elif self.preview is not None:
            candidates, keep = self.preview.candidates, len(self.history)
        else:
            self.set_status("nothing to pick yet: press space to start from the prompt")
            return
        if rank > len(candidates):
            return
        self.view_step = None
        self.submit(Take(candidates[rank - 1].id, keep, self.settings))

    def action_undo(self) -> None:
        if not self.history and not self.running:
            self.set_status("nothing to undo")
            return
        self.view_step = None
        self.submit(Undo(self.settings))

    def action_focus_prompt(self) -> None:
        self.query_one("#prompt", Input).focus()

    def action_older_step(self) -> None:
        if not self.history:
            return
        current = len(self.history) + 1 if self.view_step is None else self.view_step
        self.view_step = max(1, current - 1)

    def action_newer_step(self) -> None:
        if self.view_step is None:
            return
        self.view_step = None if self.view_step >= len(self.history) else self.view_step + 1

    def action_toggle_tint(self) -> None:
        self.tint = not self.tint

    def action_branches(self) -> None:
        if self.running:  # the stream rewrites the status line: say it in a toast
            self.notify("stop the run first (escape), then browse branches", markup=False)
            return
        if not self.engine.started:
            self.set_status("no turn yet: branches appear when you undo or pick")
            return
        current = tuple(self.history)
        screen = BranchScreen(self.engine.prompt, current,
                              self.engine.branches.alternatives(current))
        self.push_screen(screen, self.switch_branch)

    def switch_branch(self, path) -> None:
        if path is not None and path != tuple(self.history):
            self.view_step = None
            self.submit(Switch(path, self.settings))

    def action_score(self) -> None:
        """Score the prompt's text, or the current turn's when the prompt is empty."""
        text = self.prompt_text()
        if not text:
            turn = self.query_one(Transcript).current
            text = turn.plain if turn is not None else ""
        self.push_screen(ScoreScreen(self.loaded, text))

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_model(self) -> None:
        self.push_screen(ModelScreen(self.loaded))

    def action_export(self) -> None:
        self.run_worker(partial(self.runner.export, Export(Path.cwd()), self.post_message),
                        thread=True, group="export", exit_on_error=False)

    async def action_quit(self) -> None:
        self.runner.cancel()  # the worker stops before its next token
        self.workers.cancel_all()
        self.runner.flush()  # save the current turn if stepping changed it
        self.exit()

    def get_system_commands(self, screen) -> list[SystemCommand]:
        return [*super().get_system_commands(screen), *explorer_commands(self)]


def make_app(loaded: LoadedModel, settings: SamplingSettings | None = None,
             session_path: Path | None = None, resumed: list[dict] | None = None) -> MiniGPTApp:
    """One factory for the command line, the tests and the snapshots."""
    return MiniGPTApp(loaded, settings, session_path, resumed)
