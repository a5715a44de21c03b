"""Where a step's distribution comes from besides our own decoders (``minigpt.decode``):
transformers itself (``hf``: any causal LM it knows, and GGUF files it reads). Each says
what it can give (``minigpt.steps.Capabilities``); the views ask before they show.

Imports torch (and transformers, an optional extra, when a backend is used)."""
