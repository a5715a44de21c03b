"""Tiny GGUF files for the tests, written with the ``gguf`` package's own writer: a random
Llama (grouped-query attention) or Qwen2 (q/k/v biases) in the quant type asked for, with a
byte-level BPE tokenizer in the file's metadata, as llama.cpp's converter lays them out
(Llama's q/k rows permuted for its rotary layout)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hf_models import byte_level_tokenizer, reinit, transformers_model

LAYER = {"input_layernorm.weight": "attn_norm.weight",
         "post_attention_layernorm.weight": "ffn_norm.weight",
         "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
         "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
         "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
         "self_attn.o_proj.weight": "attn_output.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
         "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
         "self_attn.q_norm.weight": "attn_q_norm.weight",  # Qwen3's per-head norms
         "self_attn.k_norm.weight": "attn_k_norm.weight"}
TOP = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
       "lm_head.weight": "output.weight"}
# Types the gguf package can write from floats; the K-quants it only reads: their blocks
# are written as bytes (each below 64, so every f16 scale inside is finite).
WRITABLE = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1")
K_QUANTS = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")


def gguf_name(name: str) -> str:
    if name in TOP:
        return TOP[name]
    _, _, index, rest = name.split(".", 3)
    return f"blk.{index}.{LAYER[rest]}"


def permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter's permutation of Llama's q/k rows."""
    return weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:]) \
        .swapaxes(1, 2).reshape(weights.shape)


def write_gguf(path: Path, kind: str = "llama", quant: str = "F32", hidden: int = 256,
               window: int = 16, seed: int = 2) -> Path:
    """A tiny ``kind`` ("llama", "qwen2", or "qwen3": no native decoder) GGUF whose big matrices are in ``quant``
    (hidden 256 by default: a K-quant block is 256 numbers wide)."""
    import gguf
    import transformers as t

    tok = byte_level_tokenizer(285)
    tok.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    vocab = tok.get_vocab_size()
    torch.manual_seed(seed)
    common = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=256,
                  num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=window,
                  rms_norm_eps=1e-5)
    if kind == "llama":
        model = t.LlamaForCausalLM(t.LlamaConfig(**common, num_key_value_heads=2,
                                                 tie_word_embeddings=False, rope_theta=500.0))
    elif kind == "qwen2":
        model = t.Qwen2ForCausalLM(t.Qwen2Config(**common, num_key_value_heads=1,
                                                 tie_word_embeddings=True))
    else:
        model = t.Qwen3ForCausalLM(t.Qwen3Config(**common, num_key_value_heads=2, head_dim=128,
                                                 tie_word_embeddings=True))
    reinit(model, seed)
    config = model.config
    writer = gguf.GGUFWriter(str(path), kind)
    writer.add_name(f"tiny {kind}")
    writer.add_context_length(window)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(256)
    writer.add_block_count(2)
    writer.add_head_count(4)
    writer.add_head_count_kv(config.num_key_value_heads)
    head_dim = getattr(config, "head_dim", None) or hidden // 4  # Qwen3's: 128, as real ones
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(float(getattr(config, "rope_theta", None)
                                    or config.rope_parameters["rope_theta"]))
    writer.add_file_type(0)
    vocab_map = sorted(tok.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
    spec = __import__("json").loads(tok.to_str())
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([token for token, _ in vocab_map])
    specials = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
    writer.add_token_types([3 if token in specials else 1 for token, _ in vocab_map])
    merges = spec["model"]["merges"]
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    writer.add_bos_token_id(tok.token_to_id("<|im_start|>"))
    writer.add_eos_token_id(tok.token_to_id("<|im_end|>"))
    writer.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
                             "{{ m['content'] }}<|im_end|>\n{% endfor %}"
                             "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    qtype = gguf.GGMLQuantizationType[quant]
    rng = np.random.default_rng(seed)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        array = tensor.float().numpy()
        if kind == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
            array = permute(array, 4 if "q_proj" in name else config.num_key_value_heads)
        if array.ndim == 1:  # norms and biases stay float32, as llama.cpp keeps them
            writer.add_tensor(gguf_name(name), array)
        elif quant in K_QUANTS:
            shape = gguf.quants.quant_shape_to_byte_shape(array.shape, qtype)
            raw = rng.integers(0, 64, size=shape, dtype=np.uint8)
            writer.add_tensor(gguf_name(name), raw, raw_shape=shape, raw_dtype=qtype)
        else:
            data = gguf.quants.quantize(array, qtype)
            writer.add_tensor(gguf_name(name), data, raw_shape=data.shape, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
