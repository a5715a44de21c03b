"""``bench_peer.py --model llama``: our engine vs transformers on one Hugging Face directory.

A random SmolLM2-135M-shaped (or Qwen2.5-0.5B-shaped) model is written with
``save_pretrained`` into a temporary directory; both sides open that directory. The prompt
is a fixed list of ids (no tokenizer is needed to compare ids and top-5s).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from bench_peer import race
from minigpt.engine.engine import Engine
from minigpt.models.checkpoint import load
from minigpt.models.devices import DTYPES, decode_threads, use_threads
from minigpt.settings import SamplingSettings

SHAPES = {
    "smollm2": ("LlamaForCausalLM", dict(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
        tie_word_embeddings=True, rope_theta=100000.0, rms_norm_eps=1e-5)),
    "qwen": ("Qwen2ForCausalLM", dict(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
        tie_word_embeddings=True, rope_theta=1000000.0, rms_norm_eps=1e-6)),
}
PROMPT_IDS = [504, 3458, 6354, 16737, 11522, 690, 260, 23790, 2767, 30]


class Ids:
    """A stand-in tokenizer: the prompt is its ids written out ("504 3458 …")."""

    name, n_vocab = "ids", 0

    def encode(self, text: str) -> list[int]:
        return [int(x) for x in text.split()]

    def token_bytes(self, token_id: int) -> bytes:
        return f" {token_id}".encode()

    def special_name(self, token_id: int) -> str | None:
        return None


def write_model(directory: Path, shape: str) -> None:
    warnings.filterwarnings("ignore")
    import transformers

    name, config = SHAPES[shape]
    cls = getattr(transformers, name)
    config_cls = getattr(transformers, name.replace("ForCausalLM", "Config"))
    torch.manual_seed(0)
    cls(config_cls(**config, bos_token_id=1, eos_token_id=2)).save_pretrained(directory)


LOAD_PROBE = """
import json, resource, sys, time
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS"))
import torch
from minigpt.models.checkpoint import load
before = rss()
started = time.perf_counter()
loaded = load(sys.argv[1], device=sys.argv[2], dtype=sys.argv[3], need_tokenizer=False)
seconds = time.perf_counter() - started
after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with torch.inference_mode():
    loaded.model.make_decoder().last_logits([1, 2, 3])  # every weight read once
after_pass = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
size = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
print(json.dumps(dict(seconds=seconds, size=size, load=(after_load - before) / size,
                      first_pass=(after_pass - before) / size)))
"""


def load_stats(directory: Path, device: torch.device, dtype: str) -> dict:
    """Our load in a fresh process: its time and peak RSS over the weights' bytes."""
    out = subprocess.run([sys.executable, "-c", LOAD_PROBE, str(directory), device.type, dtype],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_llama(args, device: torch.device, n: int) -> None:
    import transformers
    from transformers import AutoModelForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / args.shape
        write_model(directory, args.shape)
        stats = load_stats(directory, device, args.dtype) if device.type == "cpu" else None
        started = time.perf_counter()
        loaded = load(directory, device=str(device), dtype=args.dtype, tokenizer=Ids())
        ours_load = time.perf_counter() - started
        started = time.perf_counter()
        hf = AutoModelForCausalLM.from_pretrained(directory, dtype=DTYPES[args.dtype])
        hf = hf.to(device).eval()
        theirs_load = time.perf_counter() - started
    if device.type == "cpu":  # both sides run on these threads
        use_threads(args.threads or decode_threads(loaded.num_parameters))
    settings = SamplingSettings(temperature=0, max_new_tokens=n, ignore_eos=True)
    engine = Engine.from_loaded(loaded, settings)
    t_ours, t_theirs, same_ids, same_top5 = race(engine, " ".join(map(str, PROMPT_IDS)), hf,
                                                 PROMPT_IDS, n, device, args.repeats)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"{name} · torch {torch.__version__} · transformers {transformers.__version__} · "
          f"{args.shape}-shaped {SHAPES[args.shape][0]}, {loaded.num_parameters / 1e6:.0f}M "
          f"parameters · {args.dtype} · {n} greedy tokens, top-5 each step"
          + (f" · {torch.get_num_threads()} CPU thread(s)" if device.type == "cpu" else ""))
    if stats is not None:
        print(f"  our load (fresh process)  {stats['seconds']:6.2f} s · peak RSS over the "
              f"weights' {stats['size'] / 2**20:,.0f} MiB: {stats['load']:.2f}× after load, "
              f"{stats['first_pass']:.2f}× after the first pass (target ≤ 1.5)")
    print(f"  load here: ours {ours_load:.2f} s · transformers from_pretrained "
          f"{theirs_load:.2f} s")
    print(f"  minigpt engine            {n / t_ours:9.1f} tok/s")
    print(f"  transformers generate     {n / t_theirs:9.1f} tok/s")
    target = "≥ 5 on cuda" if device.type == "cuda" else "≥ 1.3 on cpu"
    print(f"  engine / transformers  = {t_theirs / t_ours:6.2f}×   (target {target})")
    print(f"  identical greedy ids: {same_ids} · identical top-5 at {same_top5}/{n} steps")
