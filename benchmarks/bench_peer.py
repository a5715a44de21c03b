"""Our engine vs Hugging Face ``transformers`` on the same weights.

``--model gpt2`` (default): random nanoGPT weights (12 layers, 768 wide, 12 heads, 1,024
positions, the cl100k vocabulary of 100,277 tokens: "GPT-2 small shape"), converted to
``GPT2LMHeadModel`` (Conv1D weights transposed, exact GELU, tied head).

``--model llama``: a random SmolLM2-135M-shaped ``LlamaForCausalLM`` (d 576, ffn 1536,
30 layers, 9 heads, 3 KV heads, V 49,152, tied) written by ``save_pretrained`` and opened
by both sides from that directory; ``--shape qwen`` makes it Qwen2.5-0.5B-shaped instead.
Our load time and peak RSS (a fresh process, relative to the weights' bytes) come first.

Greedy decoding with the top-5 of every step on both sides; prints tokens/s, the ratio
and whether the ids agree. Needs the ``[bench]`` extra (``pip install -e ".[bench]"``).

    python benchmarks/bench_peer.py [--model llama] [--device cuda] [--tokens 200]
"""

from __future__ import annotations

import argparse
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402

from minigpt.models.devices import DTYPES, decode_threads, resolve_device, use_threads  # noqa: E402
from minigpt.engine.engine import Engine  # noqa: E402
from minigpt.models.nanogpt import NanoGPT  # noqa: E402
from minigpt.settings import SamplingSettings  # noqa: E402
from minigpt.text.tokenizer import cl100k  # noqa: E402

SHAPE = dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=100277)
PROMPT = "The quick brown fox jumps over the lazy dog."
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def random_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    d, V, C, L = (SHAPE[k] for k in ("n_embd", "vocab_size", "block_size", "n_layer"))
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.02  # noqa: E731
    sd = {"transformer.wte.weight": r(V, d), "transformer.wpe.weight": r(C, d) * 0.5}
    for i in range(L):
        p = f"transformer.h.{i}."
        for ln in ("ln_1", "ln_2"):
            sd[p + ln + ".weight"], sd[p + ln + ".bias"] = 1 + r(d), r(d)
        for name, shape in (("attn.c_attn", (3 * d, d)), ("attn.c_proj", (d, d)),
                            ("mlp.c_fc", (4 * d, d)), ("mlp.c_proj", (d, 4 * d))):
            sd[p + name + ".weight"], sd[p + name + ".bias"] = r(*shape), r(shape[0])
    sd["transformer.ln_f.weight"], sd["transformer.ln_f.bias"] = 1 + r(d), r(d)
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    return sd


def ours(sd: dict, device: torch.device) -> NanoGPT:
    model = NanoGPT({"d_model": SHAPE["n_embd"], "num_blocks": SHAPE["n_layer"],
                     "num_heads": SHAPE["n_head"], "context_length": SHAPE["block_size"],
                     "max_token_value": SHAPE["vocab_size"], "bias": True})
    model.load_state_dict(sd, strict=True)
    return model.to(device).eval()


def theirs(sd: dict, device: torch.device):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=SHAPE["vocab_size"], n_positions=SHAPE["block_size"],
                        n_embd=SHAPE["n_embd"], n_layer=SHAPE["n_layer"],
                        n_head=SHAPE["n_head"], activation_function="gelu",
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        layer_norm_epsilon=1e-5, tie_word_embeddings=True)
    model = GPT2LMHeadModel(config)
    converted = {k: (v.t().contiguous() if k.endswith(CONV1D) else v) for k, v in sd.items()}
    model.load_state_dict(converted, strict=False)
    model.tie_weights()
    return model.to(device).eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        sync(device)
        started = time.perf_counter()
        result = fn()
        sync(device)
        best = min(best, time.perf_counter() - started)
    return best, result


def race(engine, prompt: str, hf, prompt_ids: list[int], n: int, device: torch.device,
         repeats: int) -> tuple[float, float, bool, int]:
    """Greedy ``n`` tokens with the top-5 of every step, ours then transformers' (warmed
    up first): (our seconds, theirs, identical ids, steps with identical top-5)."""
    def run_ours():
        engine.reset(prompt)
        return [(s.chosen.id, [c.id for c in s.candidates]) for s in engine.run()]

    x = torch.tensor([prompt_ids], device=device)

    def run_theirs():
        with torch.inference_mode():
            out = hf.generate(x, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                              output_scores=True, return_dict_in_generate=True,
                              pad_token_id=0, eos_token_id=None)
            tops = [torch.topk(score[0], 5).indices.tolist() for score in out.scores]
        return list(zip(out.sequences[0, len(prompt_ids):].tolist(), tops))

    run_ours(), run_theirs()  # warm-up (and CUDA-graph capture)
    t_ours, mine = timed(run_ours, device, repeats)
    t_theirs, peer = timed(run_theirs, device, repeats)
    same_ids = [i for i, _ in mine] == [i for i, _ in peer]
    return t_ours, t_theirs, same_ids, sum(a == b for (_, a), (_, b) in zip(mine, peer))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2", choices=("gpt2", "llama"))
    parser.add_argument("--shape", default="smollm2", choices=("smollm2", "qwen"),
                        help="--model llama: SmolLM2-135M (default) or Qwen2.5-0.5B shaped")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tokens", type=int, default=None, help="default 200 on cuda, 30 on cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for both sides (default: our decode policy)")
    parser.add_argument("--dtype", default="float32", choices=tuple(DTYPES),
                        help="both models' weights in this precision (default float32)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    n = args.tokens or (200 if device.type == "cuda" else 30)
    if args.model == "llama":
        from bench_peer_llama import run_llama

        run_llama(args, device, n)
        return
    torch.manual_seed(0)
    sd = random_weights()
    prompt_ids = cl100k().encode(PROMPT)
    model = ours(sd, device).to(DTYPES[args.dtype])
    if device.type == "cpu":
        use_threads(decode_threads(sum(p.numel() for p in model.parameters())))
    engine = Engine(model, cl100k(), SamplingSettings(temperature=0, max_new_tokens=n))

    hf = theirs(sd, device).to(DTYPES[args.dtype])
    t_ours, t_theirs, same_ids, same_top5 = race(engine, PROMPT, hf, prompt_ids, n, device,
                                                 args.repeats)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    import transformers
    print(f"{name} · torch {torch.__version__} · transformers {transformers.__version__} · "
          f"GPT-2 small shape, V {SHAPE['vocab_size']:,} · {args.dtype} · {n} greedy tokens, "
          f"top-5 each step")
    print(f"  minigpt engine            {n / t_ours:9.1f} tok/s"
          + (f"  (CUDA graphs: {engine.decoder.replays} replays, "
             f"{engine.decoder.served_ahead} queued ahead)"
             if hasattr(engine.decoder, "replays") else ""))
    print(f"  transformers generate     {n / t_theirs:9.1f} tok/s")
    print(f"  engine / transformers  = {t_theirs / t_ours:6.2f}×   (target ≥ 5 on cuda)")
    print(f"  identical greedy ids: {same_ids} · identical top-5 at {same_top5}/{n} steps")


if __name__ == "__main__":
    main()
