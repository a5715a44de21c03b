"""minigpt-tui: the Textual explorer over minigpt.engine."""
