"""nanoGPT's GPT-2-style model (learned positions, fused c_attn, GELU, tied lm_head,
optional biases) and its KV-cache decoder, for ``ckpt.pt`` files with ``model_args``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F

from minigpt.decode.base import EagerDecoder
from minigpt.models.hparams import HParams
from minigpt.decode.decoder import (add_linear_, kv_cache, last_row_attention,
                      new_positions_attention, output_weight_by_columns, visible_bias)


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (nanoGPT's ``bias=False``)."""

    def __init__(self, ndim: int, bias: bool, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, bias: bool):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, nh, T, hs]
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, n_embd: int, bias: bool, shape: "GPTShape"):
        super().__init__()
        hidden = shape.ffn_size or 4 * n_embd
        self.c_fc = nn.Linear(n_embd, hidden, bias=bias)
        # nanoGPT's exact GELU; GPT-2's gelu_new is its tanh approximation
        self.gelu = nn.GELU(approximate="tanh" if shape.activation == "gelu_new" else "none")
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


@dataclass(frozen=True)
class GPTShape:
    """What Hugging Face GPT-2 configs vary beyond nanoGPT's: activation, ε, MLP width."""

    activation: str = "gelu"  # or "gelu_new"
    eps: float = 1e-5
    ffn_size: int | None = None  # None: 4 × d_model


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, bias: bool, shape: GPTShape = GPTShape()):
        super().__init__()
        self.ln_1 = LayerNorm(n_embd, bias, shape.eps)
        self.attn = CausalSelfAttention(n_embd, n_head, bias)
        self.ln_2 = LayerNorm(n_embd, bias, shape.eps)
        self.mlp = MLP(n_embd, bias, shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    """``NanoGPT(h_params)`` with the book's h_params names mapped from ``model_args``."""

    def __init__(self, h_params: dict | HParams, shape: GPTShape = GPTShape()):
        super().__init__()
        hp = self.hparams = HParams.of(h_params)
        self.h_params = hp.book_dict() if isinstance(h_params, HParams) else dict(h_params)
        d, V = hp.d_model, hp.vocab_size
        self.d_model, self.max_token_value = d, V
        self.context_length = hp.context_length
        self.num_heads = hp.num_heads
        bias = hp.bias
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(V, d),
            wpe=nn.Embedding(self.context_length, d),
            h=nn.ModuleList([Block(d, self.num_heads, bias, shape)
                             for _ in range(hp.num_blocks)]),
            ln_f=LayerNorm(d, bias, shape.eps),
        ))
        self.lm_head = nn.Linear(d, V, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied, as nanoGPT

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        _, T = idx.shape
        pos = torch.arange(T, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    def last_logits(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits [B, V] of the last position of each row of ``idx`` [B, T]."""
        _, T = idx.shape
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(T, device=idx.device))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x[:, -1]))

    def make_decoder(self) -> "NanoGPTDecoder":
        return NanoGPTDecoder(self)


class NanoGPTDecoder(EagerDecoder):
    """``last_logits(window_ids) -> [V]`` with a KV cache, as ``minigpt.decode.decoder.BookDecoder``."""

    def __init__(self, model: NanoGPT):
        super().__init__(model.hparams.context_length)
        self.model = model
        self.num_heads = model.num_heads
        self.head_size = model.d_model // model.num_heads
        # Tied with the embedding, which reads rows of it just as well in this layout.
        self.lm_head_t = output_weight_by_columns(model.lm_head.weight)
        w = model.transformer.wte.weight
        self.kv_cache = kv_cache(len(model.transformer.h), self.num_heads, self.context_length,
                                 self.head_size, like=w)
        self.k_cache, self.v_cache = self.kv_cache[:, 0], self.kv_cache[:, 1]
        self.positions = torch.arange(self.context_length, device=w.device)
        self._captured: list[torch.Tensor] | None = None

    def forward_new(self, new_ids: torch.Tensor, start: int, n: int) -> torch.Tensor:
        """As ``BookDecoder.forward_new``: positions start..n-1 hold ``new_ids``."""
        m = self.model.transformer
        x = m.wte.weight[new_ids] + m.wpe.weight[start:n]  # [T, d]
        self._captured = [] if self.capture_attention else None
        for i, block in enumerate(m.h):
            x = x + self._attend(i, block.attn, block.ln_1(x), start)
            x = x + block.mlp(block.ln_2(x))
        self.last_attention = torch.stack(self._captured) if self._captured is not None else None
        return (m.ln_f(x[-1]) @ self.lm_head_t).float()  # float32, as BookDecoder

    def step_at(self, token: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """As ``BookDecoder.step_at``: one token at a device-side position, fixed shapes."""
        m = self.model.transformer
        H, hs = self.num_heads, self.head_size
        x = m.wte.weight[token] + m.wpe.weight[position]  # [1, d]
        visible = visible_bias(self.positions, position, x.dtype)
        for i, block in enumerate(m.h):
            qkv = block.attn.c_attn(block.ln_1(x)).view(1, 1, 3, H, hs).permute(2, 0, 3, 1, 4)
            self.kv_cache[i].index_copy_(3, position, qkv[1:])  # keys and values
            y = F.scaled_dot_product_attention(qkv[0], self.k_cache[i], self.v_cache[i],
                                               attn_mask=visible)
            proj, mlp = block.attn.c_proj, block.mlp
            add_linear_(x, y[0].transpose(0, 1).reshape(1, -1), proj.weight, proj.bias)
            hidden = mlp.gelu(mlp.c_fc(block.ln_2(x)))
            add_linear_(x, hidden, mlp.c_proj.weight, mlp.c_proj.bias)
        return (m.ln_f(x[-1]) @ self.lm_head_t).float()  # float32, as BookDecoder

    def _attend(self, layer: int, attn: CausalSelfAttention, h: torch.Tensor,
                start: int) -> torch.Tensor:
        T, C = h.shape
        H, hs = self.num_heads, self.head_size
        end = start + T
        qkv = attn.c_attn(h).view(1, T, 3, H, hs).permute(2, 0, 3, 1, 4)
        q = qkv[0]  # [1, H, T, hs]
        self.kv_cache[layer, :, :, :, start:end] = qkv[1:]  # keys and values
        keys, values = self.k_cache[layer, :, :, :end], self.v_cache[layer, :, :, :end]
        if self._captured is not None:
            self._captured.append(last_row_attention(q[0, :, -1:], keys[0]))
        y = new_positions_attention(q, keys, values, start)
        return attn.c_proj(y[0].transpose(0, 1).reshape(T, C))
