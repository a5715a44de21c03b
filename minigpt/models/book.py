"""The book's chapter-18 decoder-only GPT, with the book's module names.

A checkpoint written by the book's ``train.py`` loads into ``Model(h_params)``
with plain ``load_state_dict``. This class is the readable reference; fast
decoding (KV cache) lives in ``minigpt.decode.decoder`` and reuses these weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn import functional as F

from minigpt.models.hparams import HParams


def sinusoidal_table(context_length: int, d_model: int) -> torch.Tensor:
    """[C, d] sinusoidal positions, computed exactly as the book does (float32)."""
    table = torch.zeros(context_length, d_model)
    position = torch.arange(0, context_length, dtype=torch.float).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term)
    return table


class FeedForwardNetwork(nn.Module):
    def __init__(self, d_model: int, dropout: float):
        super().__init__()
        self.ffn = nn.Sequential(
            nn.Linear(d_model, d_model * 4),
            nn.ReLU(),
            nn.Linear(d_model * 4, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(x)


class Attention(nn.Module):
    """One causal head: softmax(mask(q kᵀ / sqrt(h))) v."""

    def __init__(self, d_model: int, head_size: int, context_length: int, dropout: float):
        super().__init__()
        self.head_size = head_size
        self.Wq = nn.Linear(d_model, head_size, bias=False)
        self.Wk = nn.Linear(d_model, head_size, bias=False)
        self.Wv = nn.Linear(d_model, head_size, bias=False)
        self.register_buffer("mask", torch.tril(torch.ones(context_length, context_length)))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.Wq(x), self.Wk(x), self.Wv(x)  # [B, T, h]
        weights = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_size)  # [B, T, T]
        weights = weights.masked_fill(self.mask[:T, :T] == 0, float("-inf"))
        weights = self.dropout(F.softmax(weights, dim=-1))
        return weights @ v


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model: int, num_heads: int, context_length: int, dropout: float):
        super().__init__()
        head_size = d_model // num_heads
        self.heads = nn.ModuleList(
            [Attention(d_model, head_size, context_length, dropout) for _ in range(num_heads)]
        )
        self.projection_layer = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([head(x) for head in self.heads], dim=-1)
        return self.dropout(self.projection_layer(out))


class TransformerBlock(nn.Module):
    def __init__(self, d_model: int, num_heads: int, context_length: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.mha = MultiHeadAttention(d_model, num_heads, context_length, dropout)
        self.ffn = FeedForwardNetwork(d_model, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mha(self.ln1(x))
        x = x + self.ffn(self.ln2(x))
        return x


class Model(nn.Module):
    """``Model(h_params)``: the book's dict (``d_model, context_length, num_blocks,
    num_heads, max_token_value``; ``dropout`` defaults to 0, ``embedding_rows`` to
    max_token_value) or an ``HParams``."""

    def __init__(self, h_params: dict | HParams):
        super().__init__()
        hp = self.hparams = HParams.of(h_params)
        self.h_params = hp.book_dict() if isinstance(h_params, HParams) else dict(h_params)
        self.d_model, self.context_length = hp.d_model, hp.context_length
        self.num_blocks, self.num_heads = hp.num_blocks, hp.num_heads
        self.max_token_value = hp.vocab_size  # the book's name for it

        d, C = self.d_model, self.context_length
        # The first edition's embedding has one row more than the output layer.
        self.token_embedding_lookup_table = nn.Embedding(hp.prompt_vocab_size, d)
        self.transformer_blocks = nn.Sequential(
            *[TransformerBlock(d, self.num_heads, C, hp.dropout) for _ in range(self.num_blocks)],
            nn.LayerNorm(d),
        )
        self.model_out_linear_layer = nn.Linear(d, self.max_token_value)
        # Not in the book's state dict, so not persistent.
        self.register_buffer("position_table", sinusoidal_table(C, d), persistent=False)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        _, T = idx.shape
        x = self.token_embedding_lookup_table(idx) + self.position_table[:T]  # [B, T, d]
        x = self.transformer_blocks(x)
        logits = self.model_out_linear_layer(x)  # [B, T, V]
        loss = None
        if targets is not None:
            B, T, V = logits.shape
            loss = F.cross_entropy(logits.view(B * T, V), targets.view(B * T))
        return logits, loss

    def last_logits(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits [B, V] of the last position of each row of ``idx`` [B, T]: the blocks run
        over every position, the output layer over the last one only."""
        _, T = idx.shape
        x = self.token_embedding_lookup_table(idx) + self.position_table[:T]
        x = self.transformer_blocks(x)  # the final LayerNorm is the Sequential's last entry
        return self.model_out_linear_layer(x[:, -1])

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int = 100,
                 temperature: float = 1.0, top_k: int | None = None) -> torch.Tensor:
        """The book's loop: crop to the last ``context_length`` tokens, last logits,
        / temperature, optional top-k (ties kept), softmax, multinomial.
        Temperature 0 picks the argmax (the book would divide by zero)."""
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.context_length:])
            logits = logits[:, -1, :]
            if temperature == 0:
                idx_next = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                    logits[logits < v[:, [-1]]] = -float("Inf")
                probs = F.softmax(logits, dim=-1)
                idx_next = torch.multinomial(probs, num_samples=1)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
