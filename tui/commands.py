"""The command palette's explorer actions (ctrl+p)."""

from __future__ import annotations

from textual.app import SystemCommand

from .widgets import CandidatesTable


def explorer_commands(app) -> list[SystemCommand]:
    return [
        SystemCommand("Generate", "Generate from the prompt text",
                      lambda: app.generate(app.prompt_text())),
        SystemCommand("Stop", "Stop the running generation", app.action_escape),
        SystemCommand("Step one token", "Sample exactly one token", app.action_step_one),
        SystemCommand("Undo", "Remove the last token", app.action_undo),
        SystemCommand("Continue", "Keep generating", app.action_continue_generation),
        SystemCommand("Tint by probability", "Toggle token colours", app.action_toggle_tint),
        SystemCommand("Why this token", "Toggle the probability breakdown",
                      app.action_toggle_why),
        SystemCommand("Complete characters", "Show what byte-piece candidates become",
                      app.action_toggle_complete),
        SystemCommand("Attention strip", "Where the last position looked",
                      app.action_toggle_attention),
        SystemCommand("Branches", "The paths this turn took, abandoned ones included",
                      app.action_branches),
        SystemCommand("Score text", "Probability, rank, surprisal of every token; "
                      "perplexity", app.action_score),
        SystemCommand("Model info", "Format, h_params, tensors", app.action_model),
        SystemCommand("Export transcript", "Write Markdown and JSON to the current "
                      "directory", app.action_export),
        SystemCommand("Restart engine", "Start the engine again after it stopped; the turn "
                      "comes back as it was", app.action_restart_engine),
        SystemCommand("Keys", "Show every key", app.action_help),
        SystemCommand("Candidates", "Focus the candidates table",
                      lambda: app.query_one(CandidatesTable).focus()),
        SystemCommand("Prompt", "Focus the prompt", app.action_focus_prompt),
    ]
