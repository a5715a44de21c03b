"""Model definitions (the book's, nanoGPT's), checkpoint formats and the one loading function, devices and precisions.

Imports torch."""
