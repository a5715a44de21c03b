"""``make_decoder``: the fast inference path a model gets (its own, or the book's), replayed
through CUDA graphs on cuda. The engine and the compared model both use it."""

from __future__ import annotations

import torch

from minigpt.decode.base import Decoder
from minigpt.decode.cudagraphs import GraphedDecoder, graphs_enabled
from minigpt.decode.decoder import BookDecoder


def make_decoder(model: torch.nn.Module) -> Decoder:
    """The fast inference path for a model class; on cuda, replayed as CUDA graphs."""
    fast = getattr(model, "make_decoder", None)
    decoder = fast() if fast is not None else BookDecoder(model)
    if decoder.graphable and graphs_enabled(next(model.parameters()).device):
        return GraphedDecoder(decoder)
    return decoder
