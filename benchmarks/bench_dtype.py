"""--dtype: what bfloat16 / float16 weights cost in probability error and gain in speed.

Every dtype decodes the same greedy path (float32's, teacher-forced) so the errors do
not compound from diverging texts: per step, softmax of each dtype's logits against
float32's over the whole vocabulary (max |Δp|, KL(P_fp32 ‖ P_dtype), same argmax, same
top-5 set); then each dtype's own greedy run (how many leading tokens match float32's,
tok/s). All in one run, on one device.

    python benchmarks/bench_dtype.py [--device cuda] [--tokens 128] [--checkpoint F | --gpt2]
"""

from __future__ import annotations

import argparse
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402

from minigpt.models.checkpoint import load  # noqa: E402
from minigpt.models.devices import DTYPES, decode_threads, resolve_device, use_threads  # noqa: E402
from minigpt.engine.engine import Engine, make_decoder  # noqa: E402
from minigpt.paths import default_checkpoint  # noqa: E402
from minigpt.settings import SamplingSettings  # noqa: E402
from minigpt.text.tokenizer import cl100k  # noqa: E402

PROMPT = "农夫山泉 "


def models(args, device):
    """(name, {dtype: (model, tokenizer)}) for every dtype."""
    if args.gpt2:  # the peer benchmark's random GPT-2-small-shaped weights
        from bench_peer import ours, random_weights

        sd = random_weights()
        return "GPT-2 small shape (random weights)", {
            name: (ours(sd, device).to(dtype), cl100k()) for name, dtype in DTYPES.items()}
    path = args.checkpoint or default_checkpoint()
    loaded = {name: load(path, device=str(device), dtype=name) for name in DTYPES}
    return str(path), {name: (m.model, m.tokenizer) for name, m in loaded.items()}


def path_logits(model, ids: list[int], start: int) -> list[torch.Tensor]:
    """float64 log-probabilities after each prefix ids[:n], n = start..len(ids)-1."""
    decoder, context = make_decoder(model), int(model.context_length)
    with torch.inference_mode():
        return [torch.log_softmax(decoder.last_logits(ids[:n][-context:]).double(), -1)
                for n in range(start, len(ids))]


def greedy_run(model, tokenizer, n: int) -> tuple[list[int], float]:
    engine = Engine(model, tokenizer, SamplingSettings(temperature=0, max_new_tokens=n))
    best = float("inf")
    for _ in range(3):  # the first run captures graphs and warms caches
        engine.reset(PROMPT)
        if engine.device.type == "cuda":
            torch.cuda.synchronize()  # each step reads its rows: the run ends in sync
        started = time.perf_counter()
        ids = [step.chosen.id for step in engine.run()]
        best = min(best, time.perf_counter() - started)
    return ids, n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--checkpoint", default=None, help="default: the shipped model")
    parser.add_argument("--gpt2", action="store_true", help="GPT-2 small shape, random weights")
    args = parser.parse_args()
    device = resolve_device(args.device)
    name, by_dtype = models(args, device)
    fp32_model, tokenizer = by_dtype["float32"]
    use_threads(decode_threads(sum(p.numel() for p in fp32_model.parameters())))
    print(f"device {device} · torch {torch.__version__} · threads {torch.get_num_threads()} · "
          f"{name} · {args.tokens} greedy tokens after {PROMPT!r}")

    reference_ids, reference_rate = greedy_run(fp32_model, tokenizer, args.tokens)
    prompt_ids = tokenizer.encode(PROMPT)
    path = prompt_ids + reference_ids
    reference = path_logits(fp32_model, path, len(prompt_ids))
    print(f"  {'dtype':<9} {'max |Δp|':>9} {'mean KL':>9} {'argmax':>9} {'top-5':>9} "
          f"{'own path':>9} {'tok/s':>8} {'× fp32':>7}")
    for dtype, (model, _) in by_dtype.items():
        logs = reference if dtype == "float32" else path_logits(model, path, len(prompt_ids))
        max_dp = max((a.exp() - b.exp()).abs().max().item() for a, b in zip(reference, logs))
        kl = sum((a.exp() * (a - b)).sum().item() for a, b in zip(reference, logs)) / len(logs)
        argmax = sum(int(a.argmax() == b.argmax()) for a, b in zip(reference, logs))
        top5 = sum(set(a.topk(5).indices.tolist()) == set(b.topk(5).indices.tolist())
                   for a, b in zip(reference, logs))
        ids, rate = (reference_ids, reference_rate) if dtype == "float32" else \
            greedy_run(model, tokenizer, args.tokens)
        same = next((i for i, (a, b) in enumerate(zip(ids, reference_ids)) if a != b), len(ids))
        steps = len(logs)
        print(f"  {dtype:<9} {max_dp:>9.2e} {kl:>9.2e} {argmax:>5}/{steps:<3} "
              f"{top5:>5}/{steps:<3} {same:>5}/{len(ids):<3} {rate:>8.1f} "
              f"{rate / reference_rate:>6.2f}×")


if __name__ == "__main__":
    main()
