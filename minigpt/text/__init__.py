"""Text in and out: tokenizers (cl100k, .tiktoken files, nanoGPT's meta.pkl), UTF-8 streaming and the ‹e5 86› escapes.

Torch-free: the explorer's process imports it."""
