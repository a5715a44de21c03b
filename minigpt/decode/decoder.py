"""Fast, exact inference for the book model: a KV cache and last-position logits.

The book's ``generate`` reruns the whole window and the output layer for every
position at every step. Here the per-head weights are stacked once (the state
dict keeps the book's names), keys and values live in preallocated buffers
indexed by position, and only the last position reaches the output layer.

The window semantics stay the book's: the model sees the last
``context_length`` tokens at positions 0..C-1. Once the window slides every
position changes, so the cache is reused only for the leading tokens that are
identical at identical positions (true after undo or take-candidate; usually
nothing after a slide, which then recomputes the window — still exact).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from minigpt.decode.base import EagerDecoder
from minigpt.models.book import Model


def output_weight_by_columns(weight: torch.nn.Parameter) -> torch.Tensor:
    """The output layer's [V, d] weight re-stored as a contiguous [d, V]; the parameter is
    pointed at its transpose, so the values (and the state dict) are unchanged and the
    weight is held once. One row times this layout runs about twice as fast on CPU as the
    [V, d] matvec: it streams long rows instead of 100k dot products of length d."""
    with torch.no_grad():
        by_columns = weight.detach().t().contiguous()
        weight.data = by_columns.t()
    return by_columns


def last_row_attention(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / sqrt(head_size)) for one query per head: [H, 1, hs] × [H, n, hs]
    → [H, n]. The last position sees every key, so no mask is needed."""
    scores = query @ keys.transpose(-1, -2) / (query.shape[-1] ** 0.5)
    return F.softmax(scores, dim=-1)[:, 0]


def visible_bias(positions: torch.Tensor, position: torch.Tensor,
                 dtype: torch.dtype) -> torch.Tensor:
    """An additive attention mask over the cache's positions: 0 up to ``position``, -inf
    past it, [1, 1, 1, C]. Built once a step: a boolean mask would be converted again in
    every layer (on cuda a kernel or two each, inside the step's graph)."""
    zero = torch.zeros((), dtype=dtype, device=positions.device)
    return torch.where(positions <= position, zero, float("-inf")).view(1, 1, 1, -1)


def new_positions_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                            start: int) -> torch.Tensor:
    """Attention of the queries at positions start.. ([1, H, T, hs]) over the cached keys
    and values of positions 0..start+T-1 ([1, H, start+T, hs]), causal."""
    T, end = q.shape[-2], keys.shape[-2]
    if T == 1:  # one new query sees every cached position: no mask needed
        return F.scaled_dot_product_attention(q, keys, values)
    if start == 0:  # the whole window (prefill, or after a slide): plain causal
        return F.scaled_dot_product_attention(q, keys, values, is_causal=True)
    # query i (position start + i) sees positions ≤ start + i
    mask = torch.ones(T, end, dtype=torch.bool, device=q.device).tril(diagonal=start)
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)


def kv_cache(layers: int, heads: int, context_length: int, head_size: int,
             like: torch.Tensor) -> torch.Tensor:
    """Keys and values of every layer, [layers, 2, 1, heads, C, head_size]: a layer's keys
    ``[:, 0]`` and values ``[:, 1]`` sit side by side, so a step writes both in one op.
    The batch axis of 1 is for CPU's fused (flash) attention kernel and cuda's
    memory-efficient one, which take 4-D inputs only; 3-D ones run the unfused path."""
    shape = (layers, 2, 1, heads, context_length, head_size)
    return torch.zeros(shape, device=like.device, dtype=like.dtype)


def add_linear_(x: torch.Tensor, h: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
    """``x += h @ weightᵀ + bias`` in place, for the residual stream of one row. On cuda a
    one-row linear with a bias is two kernels (the bias copied out, then the matmul) and
    the residual add a third; a matmul into ``x``, then the bias, is two."""
    x.addmm_(h, weight.t())
    return x if bias is None else x.add_(bias)


class BookDecoder(EagerDecoder):
    """``last_logits(window_ids) -> [V]`` for a book ``Model``, with a KV cache."""

    def __init__(self, model: Model):
        super().__init__(model.hparams.context_length)
        self.vocab_size = model.hparams.vocab_size
        self.num_heads = model.num_heads
        self.d_model = model.d_model
        self.head_size = self.d_model // self.num_heads
        blocks = list(model.transformer_blocks)[:-1]
        final_ln = model.transformer_blocks[-1]
        with torch.no_grad():
            self.layers = [self._stack_block(block) for block in blocks]
            self.final_ln = (final_ln.weight.detach(), final_ln.bias.detach(), final_ln.eps)
            self.embedding = model.token_embedding_lookup_table.weight.detach()
            self.position_table = model.position_table
            self.out_weight_t = output_weight_by_columns(model.model_out_linear_layer.weight)
            self.out_bias = model.model_out_linear_layer.bias.detach()
        self.kv_cache = kv_cache(len(self.layers), self.num_heads, self.context_length,
                                 self.head_size, like=self.embedding)
        self.k_cache, self.v_cache = self.kv_cache[:, 0], self.kv_cache[:, 1]
        self.positions = torch.arange(self.context_length, device=self.embedding.device)

    @staticmethod
    def _stack_block(block) -> dict:
        heads = block.mha.heads
        qkv = torch.cat([torch.cat([getattr(h, name).weight for h in heads])
                         for name in ("Wq", "Wk", "Wv")])  # [3d, d]
        ffn = block.ffn.ffn
        return {
            "ln1": (block.ln1.weight, block.ln1.bias, block.ln1.eps),
            "ln2": (block.ln2.weight, block.ln2.bias, block.ln2.eps),
            "qkv": qkv.detach().contiguous(),
            "proj": (block.mha.projection_layer.weight, block.mha.projection_layer.bias),
            "ffn_in": (ffn[0].weight, ffn[0].bias),
            "ffn_out": (ffn[2].weight, ffn[2].bias),
        }

    def forward_new(self, new_ids: torch.Tensor, start: int, n: int) -> torch.Tensor:
        """Logits [V] after the window whose positions start..n-1 hold ``new_ids`` (the
        cache holds the keys and values of positions before ``start``)."""
        x = self.embedding[new_ids] + self.position_table[start:n]  # [T, d]
        last_layer = len(self.layers) - 1
        captured: list[torch.Tensor] | None = [] if self.capture_attention else None
        for layer_index, layer in enumerate(self.layers):
            x = self._block(layer_index, layer, x, start, last_only=layer_index == last_layer,
                            captured=captured)
        self.last_attention = torch.stack(captured) if captured is not None else None
        w, b, eps = self.final_ln
        last = F.layer_norm(x[-1:], (self.d_model,), w, b, eps)
        # float32 logits whatever the weights' dtype, for the sampler's arithmetic (their
        # values carry the weights' precision: bfloat16 keeps about 3 digits).
        return torch.addmm(self.out_bias, last, self.out_weight_t)[0].float()  # [V]

    def step_at(self, token: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """Logits [V] after one new ``token`` [1] at ``position`` [1] (device tensors).

        Fixed shapes whatever the position — attention runs over the whole cache with
        the positions past ``position`` masked out — so one CUDA graph serves every
        step (``minigpt.decode.cudagraphs``). Same math as ``forward_new`` with T = 1."""
        d, H, hs = self.d_model, self.num_heads, self.head_size
        x = self.embedding[token] + self.position_table[position]  # [1, d]
        visible = visible_bias(self.positions, position, x.dtype)
        for layer_index, layer in enumerate(self.layers):
            h = F.layer_norm(x, (d,), *layer["ln1"][:2], layer["ln1"][2])
            qkv = F.linear(h, layer["qkv"]).view(1, 1, 3, H, hs).permute(2, 0, 3, 1, 4)
            self.kv_cache[layer_index].index_copy_(3, position, qkv[1:])  # keys and values
            attn = F.scaled_dot_product_attention(qkv[0], self.k_cache[layer_index],
                                                  self.v_cache[layer_index], attn_mask=visible)
            add_linear_(x, attn[0].transpose(0, 1).reshape(1, d), *layer["proj"])
            h = F.layer_norm(x, (d,), *layer["ln2"][:2], layer["ln2"][2])
            add_linear_(x, F.relu(F.linear(h, *layer["ffn_in"])), *layer["ffn_out"])
        w, b, eps = self.final_ln
        last = F.layer_norm(x, (d,), w, b, eps)
        return torch.addmm(self.out_bias, last, self.out_weight_t)[0].float()  # [V]

    def _block(self, layer_index: int, layer: dict, x: torch.Tensor, start: int,
               last_only: bool = False, captured: list | None = None) -> torch.Tensor:
        """One transformer block over new positions start..start+T-1, caching their keys
        and values. ``last_only``: the output is needed for the last position alone (the
        top block), so attention, projection and feed-forward run for that row only."""
        T, d = x.shape
        H, hs = self.num_heads, self.head_size
        end = start + T
        h = F.layer_norm(x, (d,), *layer["ln1"][:2], layer["ln1"][2])
        qkv = F.linear(h, layer["qkv"]).view(1, T, 3, H, hs).permute(2, 0, 3, 1, 4)
        q = qkv[0]  # [1, H, T, hs]
        self.kv_cache[layer_index, :, :, :, start:end] = qkv[1:]  # keys and values
        keys = self.k_cache[layer_index, :, :, :end]
        values = self.v_cache[layer_index, :, :, :end]
        if captured is not None:
            captured.append(last_row_attention(q[0, :, -1:], keys[0]))
        if last_only and T > 1:
            q, x, T = q[:, :, -1:], x[-1:], 1
        attn = new_positions_attention(q, keys, values, start)
        x = x + F.linear(attn[0].transpose(0, 1).reshape(T, d), *layer["proj"])
        h = F.layer_norm(x, (d,), *layer["ln2"][:2], layer["ln2"][2])
        return x + F.linear(F.relu(F.linear(h, *layer["ffn_in"])), *layer["ffn_out"])
