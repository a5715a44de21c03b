"""minigpt: the book's tiny GPT — loading, tokenizer, sampling, engine, CLI (no UI)."""

import warnings

# torch warns at import when numpy is absent; we never hand tensors to numpy.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

__version__ = "0.1.0"
