"""Independent GPT-2 math (nanoGPT's architecture) and random nanoGPT checkpoints."""

from __future__ import annotations

import math

import torch


def ln(x, w, b):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    y = (x - mean) / torch.sqrt(var + 1e-5) * w
    return y + b if b is not None else y


def gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def gpt2_logits(sd: dict, args: dict, ids: list[int], attention: list | None = None
                ) -> torch.Tensor:
    """``attention``, when a list, receives each layer's last-row weights [heads, T]."""
    sd = {k.removeprefix("_orig_mod."): v.double() for k, v in sd.items()}
    C, d, H = args["block_size"], args["n_embd"], args["n_head"]
    ids = ids[-C:]
    T = len(ids)
    get = lambda name: sd.get(name)
    x = sd["transformer.wte.weight"][torch.tensor(ids)] + sd["transformer.wpe.weight"][:T]
    for i in range(args["n_layer"]):
        p = f"transformer.h.{i}."
        h = ln(x, sd[p + "ln_1.weight"], get(p + "ln_1.bias"))
        qkv = h @ sd[p + "attn.c_attn.weight"].T
        if get(p + "attn.c_attn.bias") is not None:
            qkv = qkv + sd[p + "attn.c_attn.bias"]
        q, k, v = qkv.split(d, dim=1)
        heads, last_rows = [], []
        for j in range(H):
            s = slice(j * d // H, (j + 1) * d // H)
            scores = q[:, s] @ k[:, s].T / math.sqrt(d // H)
            scores = scores.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), -math.inf)
            heads.append(torch.softmax(scores, -1) @ v[:, s])
            last_rows.append(torch.softmax(scores, -1)[-1])
        if attention is not None:
            attention.append(torch.stack(last_rows))
        y = torch.cat(heads, 1) @ sd[p + "attn.c_proj.weight"].T
        x = x + (y + sd[p + "attn.c_proj.bias"] if get(p + "attn.c_proj.bias") is not None else y)
        h = ln(x, sd[p + "ln_2.weight"], get(p + "ln_2.bias"))
        h = h @ sd[p + "mlp.c_fc.weight"].T
        if get(p + "mlp.c_fc.bias") is not None:
            h = h + sd[p + "mlp.c_fc.bias"]
        h = gelu(h) @ sd[p + "mlp.c_proj.weight"].T
        x = x + (h + sd[p + "mlp.c_proj.bias"] if get(p + "mlp.c_proj.bias") is not None else h)
    x = ln(x, sd["transformer.ln_f.weight"], get("transformer.ln_f.bias"))
    return x @ sd["transformer.wte.weight"].T  # tied lm_head


def random_nanogpt(args: dict, seed: int = 0, compiled: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    d, V, C, L = args["n_embd"], args["vocab_size"], args["block_size"], args["n_layer"]
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.3
    sd = {"transformer.wte.weight": r(V, d), "transformer.wpe.weight": r(C, d)}
    for i in range(L):
        p = f"transformer.h.{i}."
        sd[p + "ln_1.weight"], sd[p + "ln_2.weight"] = 1 + r(d), 1 + r(d)
        sd[p + "attn.c_attn.weight"], sd[p + "attn.c_proj.weight"] = r(3 * d, d), r(d, d)
        sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_proj.weight"] = r(4 * d, d), r(d, 4 * d)
        if args["bias"]:
            for name, n in (("ln_1", d), ("ln_2", d), ("attn.c_attn", 3 * d), ("attn.c_proj", d),
                            ("mlp.c_fc", 4 * d), ("mlp.c_proj", d)):
                sd[f"{p}{name}.bias"] = r(n)
    sd["transformer.ln_f.weight"] = 1 + r(d)
    if args["bias"]:
        sd["transformer.ln_f.bias"] = r(d)
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    if compiled:
        sd = {"_orig_mod." + k: v for k, v in sd.items()}
    return {"model": sd, "model_args": dict(args, dropout=0.0), "iter_num": 10,
            "best_val_loss": torch.tensor(1.5), "config": {"dataset": "shakespeare_char"}}
