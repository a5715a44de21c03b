"""The command palette's explorer actions (ctrl+p), each with the key that does it."""

from __future__ import annotations

from textual.app import SystemCommand

from .knobs import KNOBS
from .widgets import CandidatesTable

KNOB_NAMES = {"max_new_tokens": "max_new_tokens", "repetition_penalty": "repetition penalty"}


def explorer_commands(app) -> list[SystemCommand]:
    table = [  # title, key, what it does, action
        ("Generate", "enter", "generate from the prompt text", lambda: app.generate(
            app.prompt_text())),
        ("Stop", "esc", "stop the running generation", app.action_escape),
        ("Step one token", "space", "sample exactly one token", app.action_step_one),
        ("Undo", "⌫", "remove the last token", app.action_undo),
        ("Continue", "g", "keep generating", app.action_continue_generation),
        ("Tint", "p", "token colours: probability, divergence (--compare), off",
         app.action_toggle_tint),
        ("Compare: the other's top-5", "b", "the table shows the other model's own top-5",
         app.action_toggle_other_top),
        ("Compare: swap models", "x", "the other model drives from the next token",
         app.action_swap_models),
        ("Why this token", "w", "toggle the probability breakdown", app.action_toggle_why),
        ("Complete characters", "c", "show what byte-piece candidates become",
         app.action_toggle_complete),
        ("Attention strip", "a", "where the last position looked",
         app.action_toggle_attention),
        ("Branch tree", "t", "the paths this turn took, abandoned ones included",
         app.action_branches),
        ("Score text", "f2", "probability, rank, surprisal of every token; perplexity",
         app.action_score),
        ("Model info", "m", "format, h_params, tensors", app.action_model),
        ("Export transcript", "ctrl+s", "write Markdown and JSON to the current directory",
         app.action_export),
        ("Restart engine", "r", "start the engine again after it stopped; the turn comes "
         "back as it was", app.action_restart_engine),
        ("Keys", "f1", "show every key", app.action_help),
        ("Candidates", "esc", "focus the candidates table",
         lambda: app.query_one(CandidatesTable).focus()),
        ("Prompt", "i", "focus the prompt", app.action_focus_prompt),
    ]
    knobs = [(f"Set {KNOB_NAMES.get(k.field, k.label)}", "sidebar",
              f"now {getattr(app.settings, k.field)}; {k.expects}",
              lambda k=k: app.action_set_knob(k.field)) for k in KNOBS]
    return [SystemCommand(title, f"{key} · {does}", action)
            for title, key, does, action in table + knobs
            if app.comparing or not title.startswith("Compare")]  # --compare's own
