"""The engine process and its protocol: ops in, replies out; and the session files the explorer writes.

Torch-free at import: only the engine process, once started, imports torch."""
