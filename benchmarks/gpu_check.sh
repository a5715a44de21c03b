#!/usr/bin/env bash
# What a GPU box must show, in one run: the cuda-only tests, the speed benchmarks on
# cuda, and the whole suite with cuda as the default device. Needs a CUDA build of torch
# and the project installed with its extras: pip install -e ".[test,bench]".
#
#     bash benchmarks/gpu_check.sh            # exit status: 0 when every test passed
set -u
cd "$(dirname "$0")/.."
python -c "import torch" 2>/dev/null \
    || { echo "gpu_check: this python ($(command -v python)) has no torch"; exit 1; }
python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False)"; exit 1; }
export PYTHONUNBUFFERED=1
failed=0
step() { echo; echo "== $*"; "$@" || failed=1; }

python -c "import torch; print(torch.cuda.get_device_name(), '· torch', torch.__version__)"
step python -m pytest -q -p no:cacheprovider tests/test_cudagraphs.py tests/test_dtype.py \
    tests/test_sampling.py tests/test_decoder.py
step python benchmarks/bench_generate.py --device cuda --repeats 5
step python benchmarks/bench_peer.py --device cuda --tokens 200
step python benchmarks/bench_peer.py --model llama --device cuda --tokens 200
step python benchmarks/bench_peer.py --model llama --device cuda --tokens 200 --dtype bfloat16
step python benchmarks/bench_peer.py --model llama --shape qwen --device cuda --tokens 200
step python benchmarks/bench_dtype.py --device cuda --gpt2 --tokens 64
step python -m pytest -q -p no:cacheprovider
exit $failed
