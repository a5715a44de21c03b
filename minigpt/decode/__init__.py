"""Decoders: prefill and one step at a time with a KV cache, eager or replayed through CUDA graphs.

Imports torch."""
