"""Llama and Qwen2 as transformers computes them: RMSNorm, rotary positions (rotate-half,
``rope_theta``), grouped-query attention, a SwiGLU MLP; Qwen2 adds q/k/v biases.

``LlamaConfig`` holds what a ``config.json`` says (``minigpt.models.hf`` reads it);
``Llama`` loads the directory's tensors under their own names; ``LlamaDecoder`` is its
KV-cache decoder (the same contract as the book's, CUDA graphs included).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F

from minigpt.decode.base import EagerDecoder
from minigpt.decode.decoder import (add_linear_, last_row_attention,
                                    new_positions_attention, visible_bias)
from minigpt.models.hparams import HParams


@dataclass(frozen=True)
class LlamaConfig:
    hparams: HParams  # d_model, window (context_length), blocks, query heads, vocab_size
    kv_heads: int
    head_dim: int
    ffn_size: int
    rms_eps: float
    rope_theta: float
    qkv_bias: bool  # Qwen2; Llama's attention_bias also biases o_proj
    o_bias: bool
    mlp_bias: bool
    tied: bool


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``RMSNorm.forward`` without the module call, in transformers' order (float32
    statistics, then back). torch's fused ``rms_norm`` was slower on one CPU row."""
    h = x.float()
    return weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class Attention(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        d, hd = c.hparams.d_model, c.head_dim
        self.q_proj = nn.Linear(d, c.hparams.num_heads * hd, bias=c.qkv_bias)
        self.k_proj = nn.Linear(d, c.kv_heads * hd, bias=c.qkv_bias)
        self.v_proj = nn.Linear(d, c.kv_heads * hd, bias=c.qkv_bias)
        self.o_proj = nn.Linear(c.hparams.num_heads * hd, d, bias=c.o_bias)


class MLP(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        d, f = c.hparams.d_model, c.ffn_size
        self.gate_proj = nn.Linear(d, f, bias=c.mlp_bias)
        self.up_proj = nn.Linear(d, f, bias=c.mlp_bias)
        self.down_proj = nn.Linear(f, d, bias=c.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.self_attn = Attention(c)
        self.mlp = MLP(c)
        self.input_layernorm = RMSNorm(c.hparams.d_model, c.rms_eps)
        self.post_attention_layernorm = RMSNorm(c.hparams.d_model, c.rms_eps)


class Body(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.hparams.vocab_size, c.hparams.d_model)
        self.layers = nn.ModuleList([Layer(c) for _ in range(c.hparams.num_blocks)])
        self.norm = RMSNorm(c.hparams.d_model, c.rms_eps)


def rotary_tables(c: LlamaConfig, length: int, device, dtype) -> tuple[torch.Tensor, ...]:
    """cos and sin [length, head_dim] of positions 0..length-1, computed in float32 as
    transformers does, then cast to the weights' dtype."""
    dim = c.head_dim
    inv_freq = 1.0 / (c.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64, device=device)
                                       .float() / dim))
    freqs = torch.arange(length, device=device).float()[:, None] * inv_freq[None]
    angles = torch.cat([freqs, freqs], dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half rotary embedding of x [..., T, hd] by cos/sin [T, hd]."""
    half = x.shape[-1] // 2
    turned = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + turned * sin


class Llama(nn.Module):
    """The model under the directory's own tensor names (``model.layers.0.…``)."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.hparams = config.hparams
        self.model = Body(config)
        self.lm_head = nn.Linear(config.hparams.d_model, config.hparams.vocab_size, bias=False)

    def tie(self) -> None:
        if self.config.tied:
            self.lm_head.weight = self.model.embed_tokens.weight

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """Final hidden states [B, T, d] of ``idx`` [B, T] (positions 0..T-1)."""
        c, T = self.config, idx.shape[1]
        x = self.model.embed_tokens(idx)
        cos, sin = rotary_tables(c, T, idx.device, x.dtype)
        for layer in self.model.layers:
            h = layer.input_layernorm(x)
            a = layer.self_attn
            B = h.shape[0]
            q = a.q_proj(h).view(B, T, -1, c.head_dim).transpose(1, 2)
            k = a.k_proj(h).view(B, T, -1, c.head_dim).transpose(1, 2)
            v = a.v_proj(h).view(B, T, -1, c.head_dim).transpose(1, 2)
            y = F.scaled_dot_product_attention(rotate(q, cos, sin), rotate(k, cos, sin), v,
                                               is_causal=True, enable_gqa=True)
            x = x + a.o_proj(y.transpose(1, 2).reshape(B, T, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.model.norm(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        logits = self.lm_head(self.hidden(idx))  # [B, T, V]
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss

    def last_logits(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits [B, V] of the last position of each row of ``idx`` [B, T]."""
        return self.lm_head(self.hidden(idx)[:, -1])

    def make_decoder(self) -> "LlamaDecoder":
        return LlamaDecoder(self)


class LlamaDecoder(EagerDecoder):
    """``last_logits(window_ids) -> [V]`` with a KV cache. Keys are cached rotated, so a
    slid window (positions restart at 0) is recomputed, as for the book's model.

    The weights stay as the file holds them (memory-mapped, read on first use): fusing
    q/k/v or re-laying the head out gained 3 % on a CPU and cost a second copy in RSS.
    The decoder keeps plain references to them, so a step makes no module calls."""

    def __init__(self, model: Llama):
        super().__init__(model.hparams.context_length)
        c = self.config = model.config
        self.model = model
        w = model.model.embed_tokens.weight
        C, hd = self.context_length, c.head_dim
        # [layers, 2, 1, kv_heads, C, hd]: keys [:, 0] and values [:, 1]
        self.kv_cache = torch.zeros((c.hparams.num_blocks, 2, 1, c.kv_heads, C, hd),
                                    device=w.device, dtype=w.dtype)
        self.k_cache, self.v_cache = self.kv_cache[:, 0], self.kv_cache[:, 1]
        self.cos, self.sin = rotary_tables(c, C, w.device, w.dtype)
        self.positions = torch.arange(C, device=w.device)
        self.group = c.hparams.num_heads // c.kv_heads
        self.layers = [self._weights(layer) for layer in model.model.layers]
        self.embedding, self.final_norm = w, model.model.norm.weight
        self.head = model.lm_head.weight

    @staticmethod
    def _weights(layer: Layer) -> tuple:
        a, mlp = layer.self_attn, layer.mlp
        return (layer.input_layernorm.weight, a.q_proj.weight, a.q_proj.bias, a.k_proj.weight,
                a.k_proj.bias, a.v_proj.weight, a.v_proj.bias, a.o_proj.weight, a.o_proj.bias,
                layer.post_attention_layernorm.weight, mlp.gate_proj.weight, mlp.gate_proj.bias,
                mlp.up_proj.weight, mlp.up_proj.bias, mlp.down_proj.weight, mlp.down_proj.bias)

    def _qkv(self, weights: tuple, x: torch.Tensor, cos, sin):
        """Rotated queries [1, H, T, hd], keys and values [1, KV, T, hd] of rows x [T, d]."""
        T, hd = x.shape[0], self.config.head_dim
        h = rms_norm(x, weights[0], self.config.rms_eps)
        q = F.linear(h, weights[1], weights[2]).view(1, T, -1, hd).transpose(1, 2)
        k = F.linear(h, weights[3], weights[4]).view(1, T, -1, hd).transpose(1, 2)
        v = F.linear(h, weights[5], weights[6]).view(1, T, -1, hd).transpose(1, 2)
        return rotate(q, cos, sin), rotate(k, cos, sin), v

    def _mlp(self, weights: tuple, x: torch.Tensor) -> torch.Tensor:
        h = rms_norm(x, weights[9], self.config.rms_eps)
        gate = F.silu(F.linear(h, weights[10], weights[11]))
        return F.linear(gate * F.linear(h, weights[12], weights[13]), weights[14], weights[15])

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        h = rms_norm(x, self.final_norm, self.config.rms_eps)
        return F.linear(h, self.head).float()  # float32, as BookDecoder

    def forward_new(self, new_ids: torch.Tensor, start: int, n: int) -> torch.Tensor:
        """Positions start..n-1 hold ``new_ids``; the cache holds 0..start-1."""
        x = self.embedding[new_ids]  # [T, d]
        T = x.shape[0]
        cos, sin = self.cos[start:n], self.sin[start:n]
        captured = [] if self.capture_attention else None
        for i, weights in enumerate(self.layers):
            q, k, v = self._qkv(weights, x, cos, sin)
            self.k_cache[i, :, :, start:n] = k
            self.v_cache[i, :, :, start:n] = v
            keys, values = self.k_cache[i, :, :, :n], self.v_cache[i, :, :, :n]
            if captured is not None:  # per query head, as the strip shows them
                captured.append(last_row_attention(
                    q[0, :, -1:], keys[0].repeat_interleave(self.group, dim=0)))
            y = self._attend(q, keys, values, start)  # [1, H, T, hd]
            x = x + F.linear(y[0].transpose(0, 1).reshape(T, -1), weights[7], weights[8])
            x = x + self._mlp(weights, x)
        self.last_attention = torch.stack(captured) if captured is not None else None
        return self._logits(x[-1])

    def _attend(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                start: int) -> torch.Tensor:
        """Grouped-query attention. One query: each key/value head's group of query heads
        attends as a batch of rows (no copy of the cache); more: the cache is repeated."""
        H, T, hd = q.shape[1], q.shape[2], q.shape[3]
        if T == 1:
            grouped = q.view(1, keys.shape[1], self.group, hd)  # heads in KV order
            return F.scaled_dot_product_attention(grouped, keys, values).view(1, H, 1, hd)
        return new_positions_attention(q, keys.repeat_interleave(self.group, dim=1),
                                       values.repeat_interleave(self.group, dim=1), start)

    def step_at(self, token: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """One token at a device-side position with fixed shapes (for CUDA graphs)."""
        x = self.embedding[token]  # [1, d]
        cos, sin = self.cos[position], self.sin[position]  # [1, hd]
        visible = visible_bias(self.positions, position, x.dtype)
        for i, weights in enumerate(self.layers):
            q, k, v = self._qkv(weights, x, cos, sin)
            self.k_cache[i].index_copy_(2, position, k)
            self.v_cache[i].index_copy_(2, position, v)
            grouped = q.view(1, self.config.kv_heads, self.group, -1)
            y = F.scaled_dot_product_attention(grouped, self.k_cache[i], self.v_cache[i],
                                               attn_mask=visible)  # [1, KV, group, hd]
            add_linear_(x, y.reshape(1, -1), weights[7], weights[8])
            x = x + self._mlp(weights, x)
        return self._logits(x[-1])
