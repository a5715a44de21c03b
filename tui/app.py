"""minigpt-tui: a Textual app over the engine process (``minigpt.host.engine_host``).

The app never imports torch: every operation is an op sent to the engine process
(``tui.client``), whose replies come back in batches (``tui.replies``); state
lives in reactives.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Input, Label

from minigpt.branches import BranchBook
from minigpt.host import protocol as p
from minigpt.host.session import SessionRecorder, TurnState
from minigpt.settings import SamplingSettings
from minigpt.steps import Preview, Step
from minigpt.text.tokenizer import printable

from .attention import AttentionStrip
from .branches import BranchScreen
from .chat import ChatMixin
from .paste import PasteIntoPromptMixin
from .client import EngineClient
from .commands import explorer_commands
from .panels import PanelsMixin
from .leaving import LeavingMixin
from .knobs import Sidebar, kept_value
from .messages import EngineExited, EngineReplies
from .replies import RepliesMixin
from .resume import ResumeMixin
from .scoring import ScoreScreen
from .screens import HelpScreen, KnobScreen, ModelScreen
from .header import HeaderMixin
from .hints import KeyHints, where
from .lines import OneLine, StatusLine, TitleLine
from .modals import ModalsMixin
from .stepping import SteppingMixin
from .versus import VersusMixin
from .waiting import WaitingMixin
from .widgets import CandidatesTable, PromptInput, Transcript, tint_legend
from .why import WhyPanel

NARROW_WIDTH = 70  # below this the sidebar hides


class MiniGPTApp(RepliesMixin, ResumeMixin, ChatMixin, PanelsMixin, SteppingMixin, VersusMixin,
                 ModalsMixin, HeaderMixin, LeavingMixin, PasteIntoPromptMixin, WaitingMixin,
                 App):
    CSS_PATH = "minigpt.tcss"
    TITLE = "minigpt-tui"
    BINDINGS = [
        Binding("ctrl+q", "quit", "quit", priority=True, id="quit"),
        Binding("f1", "help", "help", id="help"),
        Binding("escape", "escape", "stop / explore", id="escape"),
        Binding("[", "older_step", "older step", id="older-step"),
        Binding("]", "newer_step", "newer step", id="newer-step"),
        Binding("p", "toggle_tint", "tint: probability (divergence)", id="tint"),
        Binding("x", "swap_models", "other model drives", show=False, id="swap"),
        Binding("b", "toggle_other_top", "other model's top-5", show=False, id="other-top"),
        Binding("m", "model", "model info", id="model"),
        Binding("w", "toggle_why", "why this token", id="why"),
        Binding("c", "toggle_complete", "complete characters", id="complete"),
        Binding("f2", "score", "score text", id="score"),
        Binding("t", "branches", "branch tree", id="branches"),
        Binding("a", "toggle_attention", "attention strip", id="attention"),
        Binding("r", "restart_engine", "restart engine", show=False, id="restart"),
        Binding("comma", "attention_head(-1)", "previous head", show=False, id="head-back"),
        Binding("full_stop", "attention_head(1)", "next head", show=False, id="head-next"),
        Binding("less_than_sign", "attention_layer(-1)", "previous layer", show=False,
                id="layer-back"),
        Binding("greater_than_sign", "attention_layer(1)", "next layer", show=False,
                id="layer-next"),
        Binding("ctrl+s", "export", "export transcript", id="export"),
    ]

    engine_state: reactive[str] = reactive("loading")
    """loading · ready · stopped (the process died) · failed (the model did not load)."""
    running: reactive[bool] = reactive(False)
    """An engine op (generate, step, pick, undo, branch) has not answered OpDone yet."""
    settings: reactive[SamplingSettings] = reactive(SamplingSettings, always_update=True)
    """The knobs in force (the sidebar's last valid values)."""
    view_step: reactive[int | None] = reactive(None)
    """Step shown in the candidates table while browsing history; None = the live tail."""
    tint: reactive[str] = reactive("")
    """Colour the transcript's tokens: "" (no), "probability", or (comparing two
    checkpoints) "divergence"."""

    def __init__(self, checkpoint: str | Path, settings: SamplingSettings | None = None,
                 session_path: Path | None = None, resumed: list[dict] | None = None,
                 device: str = "auto", tokenizer: str | None = None,
                 client: EngineClient | None = None, skipped_lines: int = 0,
                 threads: int | None = None, compare: str | Path | None = None,
                 dtype: str = "float32", opening_note: str | None = None,
                 window: int | None = None, chat: bool | None = None,
                 system: str | None = None, compare_dtype: str | None = None,
                 compare_device: str | None = None, slide: int | None = None,
                 backend: str = "auto", served: dict | None = None):
        super().__init__()
        self.served = served  # a server's address: its --api, --model and timeouts
        self.slide = slide  # --slide: past the window, tokens dropped at once
        self.backend = backend  # --backend: a Hugging Face directory's native or hf
        self.compare_dtype, self.compare_device = compare_dtype, compare_device  # B's own
        self.chat_requested = chat  # --chat / --no-chat; None: chat when the model has a template
        self.system_message = system  # --system: the conversation's first message
        self.opening_note = opening_note  # said once the model is ready (which file)
        self.window = window  # a Hugging Face model's KV-cache window (--window)
        self.threads = threads
        self.compare = str(compare) if compare else None  # as written, for the header
        self.compare_path = os.path.abspath(compare) if compare else None
        self.driver = "A"  # which checkpoint chooses tokens (x swaps)
        self.other_top = False  # b: the table shows the other checkpoint's own top-5
        self.skipped_lines = skipped_lines  # unreadable lines of the reopened session
        self.checkpoint = str(checkpoint)  # as the user wrote it, for the header
        # Absolute for the engine process, which may run in another directory (tests).
        self.checkpoint_path = self.checkpoint if served is not None else \
            os.path.abspath(checkpoint)
        self.device, self.tokenizer, self.dtype = device, tokenizer, dtype
        self.owns_client = client is None
        self.client = client or EngineClient()
        self.recorder = SessionRecorder(session_path, self.checkpoint) if session_path else None
        self.resumed = resumed or []
        self.set_reactive(MiniGPTApp.settings, settings or SamplingSettings())
        self.info: p.ModelInfo | None = None  # from Ready
        self.other_info: p.ModelInfo | None = None  # --compare's B, from Ready
        self.loading_stage = "start"
        self.turn = TurnState()  # the turn on screen, as the engine reported it
        self.preview: Preview | None = None
        self.position = 0  # tokens in the engine's sequence (prompt + generated)
        self.pending = ""  # bytes waiting for their character, as ‹e5 86›
        self.sampler_state: bytes | None = None
        self.first_seq = self.client.seq + 1  # replies to older ops are another app's
        self.last_engine_seq = 0  # the newest op that changes the sequence
        self.last_run_seq = 0  # the newest op that generates until stopped
        self.last_done = self.client.seq
        self.restoring = False
        self.load_error = ""  # why the model did not load, printed after the app closes
        self.table_shown_at = 0.0  # monotonic time of the last streamed table redraw
        self.branch_book = BranchBook()  # the turn's abandoned paths (the engine keeps none)
        self.op_settings: dict[int, SamplingSettings] = {}  # knobs each engine op went with
        self.sent_messages: dict[int, tuple] = {}  # a chat turn's conversation, by op seq
        self.score_request = 0
        self.new_turn_note = False  # a stepping key started a new turn from an edited prompt
        self.same_draw_note = ""  # a repeated prompt with a fixed seed: the same tokens
        self.hung_up = False
        self.exit_note = ""  # said on stderr after the screen closes (turns rescued or lost)
        self.older_unread = False  # a reopened session's older records were left unread
        self.deferred: list[tuple[type, dict]] = []  # ops typed before the model was ready

    @property
    def history(self) -> list[Step]:
        """The current turn's steps, as the engine reported them."""
        return self.turn.steps

    @property
    def idle(self) -> bool:
        """Every op sent has been answered (tests and benchmarks wait for this)."""
        return self.engine_state != "loading" and self.last_done >= self.client.seq \
            and not self.deferred

    # --- layout ----------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield OneLine("", id="header", markup=False)
        with Horizontal(id="body"):
            yield Sidebar(self.settings, id="sidebar")
            with Vertical(id="main"):
                yield Transcript(id="transcript")
                yield AttentionStrip(id="attention")
                yield WhyPanel("", id="why", markup=False)
                yield TitleLine("", id="candidates-title", markup=False)
                yield CandidatesTable(id="candidates")
                yield StatusLine("loading model …", id="status", markup=False)
        with Horizontal(id="prompt-row"):
            yield Label("> ", id="prompt-mark")
            # i puts the cursor at the end: a selection of everything, replaced by the
            # first key, surprised people (and is hard to see in some terminals).
            prompt = PromptInput(placeholder=self.placeholder(), id="prompt", compact=True,
                                 select_on_focus=False)
            prompt.cursor_blink = False  # nothing to repaint twice a second over SSH
            yield prompt
        yield KeyHints(id="hints")

    def placeholder(self) -> str:
        """The shipped model continues Chinese product names; another model gets no
        example it may not know (an English model was offered 农夫山泉)."""
        from minigpt.paths import is_shipped

        return "prompt, e.g. 农夫山泉 " if is_shipped(Path(self.checkpoint_path)) else \
            "a prompt to continue"

    def on_mount(self) -> None:
        self.show_header()
        self.query_one("#prompt", Input).focus()
        transcript = self.query_one(Transcript)
        if self.older_unread:
            transcript.add_note("… older turns of this session are in its file, not shown: "
                                "a reopened session reads only its last 8 MiB")
        past = self.resumed[:-1] if self.resumable() else self.resumed
        for index, record in enumerate(past):  # the last one is replayed once ready
            transcript.add_past_turn(record, self.past_header(index))
        self.set_class(self.size.width < NARROW_WIDTH, "narrow")
        self.fit_panels()  # also shows the newest turn of a reopened session
        # Hints follow focus wherever it moves (modals closing, tab, the palette) and
        # whichever screen is on top.
        self.watch(self.screen, "focused", self.update_hints, init=False)
        self.client.attach(lambda replies: self.post_message(EngineReplies(replies)),
                           lambda *why: self.post_message(EngineExited(*why)))
        if not self.client.alive:
            self.client.start()
        self.open_model()
        self.watch_engine()
        if self.owns_client:  # the real program (tests share one engine, and no signals)
            loop = asyncio.get_running_loop()
            for name in ("SIGHUP", "SIGTERM"):
                if hasattr(signal, name):
                    number = getattr(signal, name)
                    loop.add_signal_handler(number, self.hang_up, 128 + number)

    def open_model(self) -> None:
        self.engine_state = "loading"
        self.send(p.Open, path=self.checkpoint_path, device=self.device, dtype=self.dtype,
                  tokenizer=self.tokenizer, settings=self.settings, threads=self.threads,
                  compare=self.compare_path, window=self.window, slide=self.slide,
                  backend=self.backend, served=self.served,
                  compare_dtype=self.compare_dtype, compare_device=self.compare_device)

    def on_resize(self, event) -> None:
        self.set_class(event.size.width < NARROW_WIDTH, "narrow")
        self.call_after_refresh(self.show_header)
        self.screen_rows = event.size.height  # self.size may not have caught up yet
        self.fit_panels()

    def keep_in_view(self) -> None:
        """After the layout settles: the browsed step, or the live end, stays on screen."""
        index = None if self.view_step is None else self.view_step - 1
        self.call_after_refresh(self.query_one(Transcript).keep_in_view, index)

    # --- ops -------------------------------------------------------------------

    def send(self, op_type, **fields) -> int | None:
        try:
            return self.client.send(op_type, **fields)
        except (OSError, ValueError):
            self.show_error("engine stopped — r restarts")
            return None

    def submit(self, op_type, **fields) -> None:
        """Send an op that changes the sequence. It stops a run in progress (within a
        token) but not the single steps, picks and undos queued before it."""
        if self.engine_state in ("stopped", "failed"):
            self.show_error("engine stopped — r restarts")
            return
        if op_type is not p.Replay and self.must_wait():  # whether a prompt is chat (and
            self.deferred.append((op_type, fields))  # its knobs, when a session reopens)
            self.running = True  # is known once the model is ready: sent from there
            return
        self.client.cancel_runs(self.last_run_seq)
        fields = self.chat_fields(op_type, fields)
        seq = self.send(op_type, settings=self.settings, **fields)
        if seq is None:
            return
        self.op_settings[seq] = self.settings
        if fields.get("messages") is not None:
            self.sent_messages[seq] = fields["messages"]
        self.last_engine_seq = seq
        if op_type is p.Generate and fields.get("count") != 1:
            self.last_run_seq = seq
        if op_type is p.Generate and fields.get("prompt") is not None:  # until it streams
            self.set_status("starting the turn … · esc stops")
        self.running = True

    # --- helpers -----------------------------------------------------------------

    def set_status(self, text: str) -> None:
        status = self.query_one(StatusLine)
        status.remove_class("error")
        status.update(printable(text))

    def show_error(self, text: str) -> None:
        """One line on the status bar (the whole message in a toast). Messages may quote
        paths and values from files: shown as text, control characters made visible."""
        text = printable(text)
        status = self.query_one(StatusLine)
        status.add_class("error")
        status.update(f"✗ {text}")
        self.notify(text, severity="error", timeout=6, markup=False)

    def prompt_text(self) -> str:
        return self.query_one("#prompt", Input).value

    # --- watchers ----------------------------------------------------------------

    def watch_running(self, running: bool) -> None:
        self.set_class(running, "running")
        self.update_hints()
        if running and self.why_shown:  # it is asked again when the run ends
            self.query_one(WhyPanel).pause()

    def watch_view_step(self, step: int | None) -> None:
        self.query_one(Transcript).set_highlight(None if step is None else step - 1)
        if self.is_mounted:
            self.refresh_candidates()
            self.request_insights()
            self.keep_in_view()

    def watch_tint(self, tint: bool) -> None:
        self.query_one(Transcript).set_tint(tint)

    def on_descendant_focus(self) -> None:
        self.update_hints()

    def update_hints(self, *_) -> None:
        for hints in self.screen_stack[0].query(KeyHints) if self.screen_stack else ():
            hints.show(where(self, self.focused))

    def watch_engine_state(self) -> None:
        self.update_hints()

    def push_screen(self, *args, **kwargs):
        result = super().push_screen(*args, **kwargs)
        self.call_after_refresh(self.update_hints)
        return result

    def pop_screen(self):
        result = super().pop_screen()
        self.call_after_refresh(self.update_hints)  # focus returns to where it was
        return result

    @on(Sidebar.Changed)
    def sidebar_changed(self, event: Sidebar.Changed) -> None:
        self.settings = event.settings
        self.knobs_changed()

    @on(Sidebar.Valid)
    def sidebar_valid(self, event: Sidebar.Valid) -> None:
        self.set_status(f"{event.label} {kept_value(self.settings, event.label)} in force")

    @on(Sidebar.Invalid)
    def sidebar_invalid(self, event: Sidebar.Invalid) -> None:
        status = self.query_one(StatusLine)
        status.add_class("error")
        status.update(f"✗ {event.error} · {kept_value(self.settings, event.label)} kept")

    # --- actions -----------------------------------------------------------------

    @on(Input.Submitted, "#prompt")
    def prompt_submitted(self, event: Input.Submitted) -> None:
        self.generate(event.value)

    def generate(self, prompt: str) -> None:
        self.view_step = None
        self.submit(p.Generate, prompt=prompt, count=None)

    def action_escape(self) -> None:
        if isinstance(self.screen, (HelpScreen, ModelScreen, ScoreScreen, BranchScreen,
                                    KnobScreen)):
            self.screen.dismiss()
        elif self.unresponsive and self.running:
            self.stop_waiting()
        elif self.deferred:
            self.drop_deferred()
        elif self.running:
            self.client.cancel_all()
            self.query_one(CandidatesTable).focus()  # where the stepping keys live
        elif self.focused is not None and self.focused.id != "candidates":
            from_prompt = self.focused.id == "prompt"
            self.query_one(CandidatesTable).focus()  # from the prompt, a knob, the transcript
            if from_prompt:
                self.open_typed_prompt()
        else:
            self.view_step = None

    def action_focus_prompt(self) -> None:
        self.query_one("#prompt", Input).focus()

    def action_focus_sidebar(self) -> None:
        """The first knob, or the transcript where the sidebar is folded away."""
        if self.query_one(Sidebar).display and not self.has_class("narrow"):
            self.query_one("#knob-temperature", Input).focus()
        else:
            self.query_one(Transcript).focus()

    def action_toggle_tint(self) -> None:
        modes = self.tint_modes()
        self.tint = modes[(modes.index(self.tint) + 1) % len(modes)]
        cycle = " → ".join(mode or "off" for mode in modes)
        self.set_status(tint_legend(self.tint) if self.tint else f"tint off (p: {cycle})")

    def get_system_commands(self, screen) -> list[SystemCommand]:
        return [*super().get_system_commands(screen), *explorer_commands(self)]


def make_app(checkpoint: str | Path, settings: SamplingSettings | None = None,
             session_path: Path | None = None, resumed: list[dict] | None = None,
             device: str = "auto", tokenizer: str | None = None,
             client: EngineClient | None = None, skipped_lines: int = 0,
             threads: int | None = None, compare: str | Path | None = None,
             dtype: str = "float32", opening_note: str | None = None,
             window: int | None = None, chat: bool | None = None,
             system: str | None = None, compare_dtype: str | None = None,
             compare_device: str | None = None, slide: int | None = None,
             backend: str = "auto", served: dict | None = None) -> MiniGPTApp:
    """One factory for the command line, the tests and the snapshots (``served``: the
    checkpoint is a server's address; its --api, --model and timeouts)."""
    return MiniGPTApp(checkpoint, settings, session_path, resumed, device, tokenizer, client,
                      skipped_lines, threads, compare, dtype, opening_note, window, chat,
                      system, compare_dtype, compare_device, slide, backend, served)
