"""Where a step's distribution comes from besides our own decoders (``minigpt.decode``):
transformers itself (``hf``: any causal LM it knows, and GGUF files it reads), and a
server that holds the model (``served``: llama-server, vLLM, SGLang, over ``http``). Each
says what it can give (``minigpt.steps.Capabilities``); the views ask before they show.

``hf`` imports torch (and transformers, an optional extra); the served modules do not."""
