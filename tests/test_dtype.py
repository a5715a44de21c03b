"""--dtype: bfloat16 / float16 weights, float32 probabilities, a bounded error, and the
flag wherever a model is loaded (CLI, explorer)."""

import json

import pytest
import torch

from conftest import screen_text, settle
from minigpt.models.checkpoint import load
from minigpt.cli.main import main
from minigpt.decode.make import make_decoder
from minigpt.engine.engine import Engine
from minigpt.errors import SettingsError
from minigpt.settings import SamplingSettings
from minigpt.text.tokenizer import cl100k
from reference import random_book_state_dict

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
LONG = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen " \
       "fifteen sixteen seventeen"  # past the tiny model's window of 16

# Largest KL(P_fp32 ‖ P_dtype) measured over this file's steps on the tiny model: bfloat16
# 3.3e-4, float16 4.4e-6 (benchmarks/bench_dtype.py states it for real models).
KL_BOUND = {"bfloat16": 5e-3, "float16": 1e-4}


def log_probs_along(model, ids: list[int]) -> list[torch.Tensor]:
    decoder, context = make_decoder(model), model.context_length
    with torch.inference_mode():
        logits = [decoder.last_logits(ids[:n][-context:]) for n in range(1, len(ids) + 1)]
    assert all(x.dtype == torch.float32 for x in logits)  # the sampler's input stays fp32
    return [torch.log_softmax(x.double(), -1) for x in logits]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_lower_precision_weights_stay_close_to_float32(tiny_ckpt, dtype):
    reference, lowered = load(tiny_ckpt, device="cpu"), load(tiny_ckpt, "cpu", dtype=dtype)
    assert {p.dtype for p in lowered.model.parameters()} == {getattr(torch, dtype)}
    assert lowered.model.position_table.dtype == getattr(torch, dtype)
    ids = cl100k().encode(LONG)
    assert len(ids) > reference.model.context_length
    pairs = zip(log_probs_along(reference.model, ids), log_probs_along(lowered.model, ids))
    worst = max((a.exp() * (a - b)).sum().item() for a, b in pairs)
    assert worst < KL_BOUND[dtype]


def test_an_engine_on_bfloat16_weights_reports_float32_probabilities(tiny_ckpt):
    loaded = load(tiny_ckpt, "cpu", dtype="bfloat16")
    engine = Engine.from_loaded(loaded, SamplingSettings(temperature=0.8, top_k=40, seed=1,
                                                         max_new_tokens=20))
    engine.reset(LONG)
    steps = list(engine.run())
    assert len(steps) == 20
    for step in steps:
        probs = [c.prob for c in step.candidates]
        assert probs == sorted(probs, reverse=True) and 0 < probs[0] <= 1
        assert step.chosen.prob > 0


def test_an_unknown_dtype_is_one_line(tiny_ckpt, capsys):
    with pytest.raises(SettingsError, match="unknown dtype 'fp8': choose one of float32, "
                                            "bfloat16, float16"):
        load(tiny_ckpt, "cpu", dtype="fp8")
    code = main(["generate", str(tiny_ckpt), "--prompt", "a", "--dtype", "fp8"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--dtype: invalid choice: 'fp8'" in err


def test_weights_beyond_float16s_range_are_refused_in_one_line(tmp_path, tiny_hp, capsys):
    """65,504 is float16's largest value: a bigger weight would load as Inf and make every
    step NaN, which the engine would then blame on damaged weights."""
    sd = random_book_state_dict(tiny_hp)
    sd["model_out_linear_layer.bias"][3] = 1e6
    path = tmp_path / "wide.ckpt"
    torch.save({"model_state_dict": sd, "h_params": tiny_hp}, path)
    with pytest.raises(SettingsError, match="magnitude 1e.06 does not fit float16"):
        load(path, "cpu", dtype="float16")
    assert load(path, "cpu", dtype="bfloat16").model.model_out_linear_layer.bias[3] == 1e6
    assert main(["generate", str(path), "--prompt", "a", "--dtype", "float16"]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "use --dtype bfloat16" in err


def test_the_cli_loads_and_reports_the_dtype(tiny_ckpt, capsys):
    assert main(["inspect", str(tiny_ckpt), "--json", "--device", "cpu",
                 "--dtype", "float16"]) == 0
    assert json.loads(capsys.readouterr().out)["dtype"] == "float16"
    assert main(["inspect", str(tiny_ckpt), "--device", "cpu", "--dtype", "bfloat16"]) == 0
    assert "weights loaded as bfloat16 (--dtype)" in capsys.readouterr().out
    assert main(["generate", str(tiny_ckpt), "--prompt", "农夫山泉 ", "--device", "cpu",
                 "--dtype", "bfloat16", "--max-new-tokens", "6", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["token_ids"]) == 6 and "\ufffd" not in data["completion"]


async def test_the_explorer_says_the_weights_precision(make_tui):
    app = make_tui(dtype="bfloat16", max_new_tokens=5)
    async with app.run_test(size=(60, 20)) as pilot:  # the narrowest screen kept
        await settle(app, pilot)
        await pilot.press(*"abc", "enter")
        await settle(app, pilot)
        assert app.info.dtype == "bfloat16" and len(app.history) == 5
        assert "cpu · bf16" in screen_text(app).splitlines()[0]


async def test_a_narrow_compare_header_keeps_the_facts(make_tui, other_ckpt):
    """At 60 columns the program's name gives way first: who drives, both names, the
    device and the precision stay on screen; widened, the name comes back."""
    app = make_tui(compare=other_ckpt, dtype="bfloat16", max_new_tokens=2)
    async with app.run_test(size=(60, 20)) as pilot:
        await settle(app, pilot)
        header = screen_text(app).splitlines()[0].strip()
        assert header.startswith("A drives") and header.endswith("cpu · bf16")
        await pilot.resize_terminal(100, 30)
        await settle(app, pilot)
        assert screen_text(app).splitlines()[0].strip().startswith("minigpt-tui · A drives")


@cuda
@pytest.mark.parametrize("prompt", ["one two", LONG], ids=["step-graph", "window-graph"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_cuda_graphs_on_lower_precision_agree_with_the_eager_path(tiny_ckpt, dtype, prompt,
                                                                  monkeypatch):
    """Graphs capture and replay in 16 bits. Their kernels round differently from the
    eager path's (masked whole-cache attention vs the prefix), so near-ties may pick other
    tokens: the eager engine follows the graphed path and each probability must agree
    to within 16-bit rounding. A short prompt runs the step graph (its 16-bit additive
    mask) before the window fills; the long one fills it at once."""
    settings = SamplingSettings(temperature=0, max_new_tokens=30)
    engines = []
    for graphs in ("1", "0"):
        monkeypatch.setenv("MINIGPT_CUDA_GRAPHS", graphs)
        engines.append(Engine.from_loaded(load(tiny_ckpt, "cuda", dtype=dtype), settings))
    graphed, eager = engines
    graphed.reset(prompt)
    eager.reset(prompt)
    for step in graphed.run():
        followed = eager.step(step.chosen.id)
        assert abs(followed.chosen.prob - step.chosen.prob) <= 0.1 * step.chosen.prob
    assert graphed.decoder.replays > 20 and not graphed.notice
