"""An independent implementation of the book's math (DESIGN.md §2), written from
the description with plain tensor operations — deliberately not ``minigpt.models.book``."""

from __future__ import annotations

import math

import pytest
import torch


def positions(C: int, d: int) -> torch.Tensor:
    pe = torch.zeros(C, d)
    for pos in range(C):
        for i in range(0, d, 2):
            angle = pos / (10000 ** (i / d))
            pe[pos, i] = math.sin(angle)
            if i + 1 < d:
                pe[pos, i + 1] = math.cos(angle)
    return pe


def layer_norm(x, w, b, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def book_logits(sd: dict, hp: dict, ids: list[int], attention: list | None = None
                ) -> torch.Tensor:
    """Logits [T, V] for ``ids`` cropped to the last context_length tokens. ``attention``,
    when given a list, receives each layer's last-row weights [heads, T]."""
    sd = {k: v.double() for k, v in sd.items()}
    C, d, H = hp["context_length"], hp["d_model"], hp["num_heads"]
    ids = ids[-C:]
    T = len(ids)
    x = sd["token_embedding_lookup_table.weight"][torch.tensor(ids)] + positions(C, d)[:T].double()
    for i in range(hp["num_blocks"]):
        p = f"transformer_blocks.{i}."
        h = layer_norm(x, sd[p + "ln1.weight"], sd[p + "ln1.bias"])
        outs, last_rows = [], []
        for j in range(H):
            q = h @ sd[f"{p}mha.heads.{j}.Wq.weight"].T
            k = h @ sd[f"{p}mha.heads.{j}.Wk.weight"].T
            v = h @ sd[f"{p}mha.heads.{j}.Wv.weight"].T
            scores = q @ k.T / math.sqrt(d // H)
            causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
            scores = scores.masked_fill(~causal, float("-inf"))
            outs.append(torch.softmax(scores, -1) @ v)
            last_rows.append(torch.softmax(scores, -1)[-1])
        if attention is not None:
            attention.append(torch.stack(last_rows))
        x = x + torch.cat(outs, -1) @ sd[p + "mha.projection_layer.weight"].T \
            + sd[p + "mha.projection_layer.bias"]
        h = layer_norm(x, sd[p + "ln2.weight"], sd[p + "ln2.bias"])
        h = torch.relu(h @ sd[p + "ffn.ffn.0.weight"].T + sd[p + "ffn.ffn.0.bias"])
        x = x + h @ sd[p + "ffn.ffn.2.weight"].T + sd[p + "ffn.ffn.2.bias"]
    n = hp["num_blocks"]
    x = layer_norm(x, sd[f"transformer_blocks.{n}.weight"], sd[f"transformer_blocks.{n}.bias"])
    return x @ sd["model_out_linear_layer.weight"].T + sd["model_out_linear_layer.bias"]


def random_book_state_dict(hp: dict, seed: int = 0, scale: float = 0.3) -> dict:
    """Random weights with the book's names and shapes (independent of our Model)."""
    g = torch.Generator().manual_seed(seed)
    d, V, C, H = hp["d_model"], hp["max_token_value"], hp["context_length"], hp["num_heads"]
    hs = d // H

    def r(*shape):
        return torch.randn(*shape, generator=g) * scale

    sd = {"token_embedding_lookup_table.weight": r(V, d)}
    for i in range(hp["num_blocks"]):
        p = f"transformer_blocks.{i}."
        sd[p + "ln1.weight"], sd[p + "ln1.bias"] = 1 + r(d), r(d)
        sd[p + "ln2.weight"], sd[p + "ln2.bias"] = 1 + r(d), r(d)
        for j in range(H):
            for name in ("Wq", "Wk", "Wv"):
                sd[f"{p}mha.heads.{j}.{name}.weight"] = r(hs, d)
            sd[f"{p}mha.heads.{j}.mask"] = torch.tril(torch.ones(C, C))
        sd[p + "mha.projection_layer.weight"], sd[p + "mha.projection_layer.bias"] = r(d, d), r(d)
        sd[p + "ffn.ffn.0.weight"], sd[p + "ffn.ffn.0.bias"] = r(4 * d, d), r(4 * d)
        sd[p + "ffn.ffn.2.weight"], sd[p + "ffn.ffn.2.bias"] = r(d, 4 * d), r(d)
    n = hp["num_blocks"]
    sd[f"transformer_blocks.{n}.weight"], sd[f"transformer_blocks.{n}.bias"] = 1 + r(d), r(d)
    sd["model_out_linear_layer.weight"], sd["model_out_linear_layer.bias"] = r(V, d), r(V)
    return sd


def book_h_params(d_model=32, context_length=16, num_blocks=2, num_heads=4,
                  max_token_value=100256, device="cpu") -> dict:
    return {"d_model": d_model, "batch_size": 4, "context_length": context_length,
            "num_blocks": num_blocks, "num_heads": num_heads, "dropout": 0.1, "max_iters": 500,
            "learning_rate": 1e-3, "eval_interval": 50, "eval_iters": 20, "device": device,
            "TORCH_SEED": 1337, "max_token_value": max_token_value}


def assert_top_candidates(ids: list[int], probs: list[float], ref_probs: torch.Tensor,
                          tol: float = 1e-6) -> None:
    """Reported top candidates against reference probabilities [V]: the same ranked
    values, and each id carrying its own reference probability. Two tokens whose
    probabilities agree within float noise may swap ranks; nothing else may."""
    top = torch.topk(ref_probs, len(ids))
    assert probs == pytest.approx(top.values.tolist(), abs=tol)
    assert probs == pytest.approx(ref_probs[ids].tolist(), abs=tol)
    assert len(set(ids)) == len(ids)
