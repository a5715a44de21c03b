"""Model definitions (the book's, nanoGPT's), their shape (``HParams``), checkpoint formats
and the one loading function, devices and precisions.

Imports torch (all but ``hparams``, which is torch-free)."""
