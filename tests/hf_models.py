"""Tiny Hugging Face model directories for the tests, written by transformers' own
``save_pretrained``, with tokenizers trained (or built) here: byte-level BPE, and a
byte-fallback BPE with a BOS as Llama's. Random weights, window 16."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

WINDOW = 16
CORPUS = ["hello world, the cat sat on the mat", "农夫山泉有点甜 the quick brown fox",
          "天然水 hello there the end", "the theme of the thesis is the heat"] * 20


def byte_level_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def byte_fallback_tokenizer():
    """As Llama's tokenizer.json: ▁ for spaces, <0xNN> pieces for what the vocabulary
    lacks (every Chinese character here), <s> prepended."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece in ["▁", *"abcdefghijklmnopqrstuvwxyz,", "▁t", "he", "▁the", "▁a", "at", "▁c"]:
        vocab[piece] = len(vocab)
    merges = [("▁", "t"), ("h", "e"), ("▁t", "he"), ("▁", "a"), ("a", "t"), ("▁", "c")]
    tok = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", byte_fallback=True,
                               fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                           normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    return tok


def transformers_model(kind: str, vocab_size: int, positions: int = WINDOW):
    warnings.filterwarnings("ignore")
    import transformers as t

    t.utils.logging.disable_progress_bar()  # tests read stderr: no bars, no notices
    t.utils.logging.set_verbosity_error()
    torch.manual_seed({"gpt2": 1, "llama": 2, "qwen2": 3}[kind])
    if kind == "gpt2":
        config = t.GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4,
                              n_positions=positions, bos_token_id=0, eos_token_id=0)
        return t.GPT2LMHeadModel(config)
    common = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=48,
                  num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=positions)
    if kind == "llama":  # grouped-query attention, an untied head, another rope_theta
        config = t.LlamaConfig(**common, num_key_value_heads=2, tie_word_embeddings=False,
                               rope_theta=500.0, bos_token_id=1, eos_token_id=2)
        return t.LlamaForCausalLM(config)
    config = t.Qwen2Config(**common, num_key_value_heads=1, tie_word_embeddings=True,
                           eos_token_id=0)
    return t.Qwen2ForCausalLM(config)


def reinit(model, seed: int):
    """Weights from our own generator, not transformers' initialisers: the same tiny
    model (and snapshot) under any transformers version. Norm weights near 1, biases
    large enough to matter (Qwen2's q/k/v)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=g)
            if "norm" in name or "ln_" in name:
                param.copy_(1 + 0.1 * noise if name.endswith("weight") else 0.1 * noise)
            else:
                param.copy_(noise * (0.5 if name.endswith("bias") else 0.08))
    return model


def write_model(directory: Path, kind: str, positions: int = WINDOW) -> Path:
    """gpt2: byte-level tokenizer.json; llama: byte fallback + BOS; qwen2: bfloat16,
    sharded, byte-level. ``positions``: the model's window (16 unless asked)."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = byte_fallback_tokenizer() if kind == "llama" else byte_level_tokenizer(290)
    model = reinit(transformers_model(kind, 300, positions),
                   {"gpt2": 1, "llama": 2, "qwen2": 3}[kind])
    model.eval()
    if kind == "qwen2":
        model = model.to(torch.bfloat16)
        model.save_pretrained(directory, max_shard_size="40KB")
    else:
        model.save_pretrained(directory)
    tokenizer.save(str(directory / "tokenizer.json"))
    return directory


def reference_model(directory: Path):
    """transformers' own model of ``directory``, float32, eval."""
    warnings.filterwarnings("ignore")
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()


def reference_probs(model, ids: list[int]) -> torch.Tensor:
    """softmax of the last row for the last ``WINDOW`` ids (the book's crop), float64."""
    with torch.no_grad():
        logits = model(torch.tensor([ids[-WINDOW:]])).logits[0, -1]
    return torch.softmax(logits.double(), dim=-1)


def set_eos(directory: Path, eos) -> None:
    path = directory / "generation_config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    config["eos_token_id"] = eos
    path.write_text(json.dumps(config))


CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
          "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
ZEPHYR = ("{{ bos_token }}{% for message in messages %}"
          "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
          "{{ raise_exception('roles are system, user and assistant') }}{% endif %}"
          "{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}")


def write_chat_model(directory: Path, kind: str) -> Path:
    """An instruct tune as transformers writes one: "chatml" (Qwen2, <|im_start|> and
    <|im_end|> special, eos [<|im_end|>, <|endoftext|>]) or "zephyr" (Llama, byte
    fallback, a template using bos_token and eos_token and rejecting unknown roles)."""
    from transformers import PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    if kind == "chatml":
        tok = byte_level_tokenizer(285)
        tok.add_special_tokens(["<|im_start|>", "<|im_end|>"])
        model = reinit(transformers_model("qwen2", 300), 4)
        wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                          pad_token="<|endoftext|>", chat_template=CHATML)
        eos = [tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")]
    else:
        tok = byte_fallback_tokenizer()
        tok.add_tokens(["<|user|>", "<|assistant|>", "<|system|>"])
        model = reinit(transformers_model("llama", 300), 5)
        wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>",
                                          eos_token="</s>", unk_token="<unk>",
                                          chat_template=ZEPHYR)
        eos = [2]
    model.eval().save_pretrained(directory)
    wrapped.save_pretrained(directory)
    set_eos(directory, eos)
    return directory
