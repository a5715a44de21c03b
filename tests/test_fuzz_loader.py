"""Property-based fuzzing of the loader: damaged and hostile files end in one line."""

import io
import math
import os

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings, strategies as st

from minigpt.models.checkpoint import load
from minigpt.engine.engine import Engine
from minigpt.errors import CheckpointError, GenerationError
from minigpt.settings import SamplingSettings
from reference import book_h_params, random_book_state_dict

HP = book_h_params(d_model=8, num_heads=2, num_blocks=1, context_length=4, max_token_value=64)
# The suite gates CI, so it replays the same examples every run; set MINIGPT_FUZZ_EXPLORE=N
# to draw N fresh examples per test instead (how the non-UTF-8 zip name was found).
EXPLORE = int(os.environ.get("MINIGPT_FUZZ_EXPLORE", "0"))
FUZZ = settings(max_examples=EXPLORE or 60, deadline=None, derandomize=not EXPLORE,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def valid_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"model_state_dict": random_book_state_dict(HP), "h_params": HP}, buffer)
    return buffer.getvalue()


VALID = valid_bytes()


def load_outcome(path):
    """Loading either works or raises a one-line CheckpointError; nothing else escapes."""
    try:
        loaded = load(path, device="cpu")
    except CheckpointError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(path))
        return None
    return loaded


def step_outcome(loaded):
    engine = Engine.from_loaded(loaded, SamplingSettings(temperature=1.0, max_new_tokens=3))
    try:
        engine.reset("!")  # id 0, inside any vocabulary
        list(engine.run())
    except GenerationError as exc:
        assert "NaN/Inf" in str(exc)


@FUZZ
@given(data=st.binary(min_size=1, max_size=4096))
def test_random_bytes(tmp_path, data):
    path = tmp_path / "random.ckpt"
    path.write_bytes(data)
    assert load_outcome(path) is None


@FUZZ
@given(cut=st.integers(min_value=1, max_value=len(VALID) - 1))
def test_truncated_archives(tmp_path, cut):
    path = tmp_path / "cut.ckpt"
    path.write_bytes(VALID[:cut])
    assert load_outcome(path) is None


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(1, 255)),
                      min_size=1, max_size=8))
@example(flips=[(26, 60)])  # a member name that is not UTF-8: once crashed the diagnosis
def test_mutated_checkpoints(tmp_path, flips):
    data = bytearray(VALID)
    for position, xor in flips:
        data[position] ^= xor
    path = tmp_path / "mutated.ckpt"
    path.write_bytes(bytes(data))
    loaded = load_outcome(path)
    if loaded is not None:
        step_outcome(loaded)


DTYPES = [torch.int64, torch.int8, torch.bool, torch.complex64, torch.uint8]


@FUZZ
@given(name=st.sampled_from(sorted(random_book_state_dict(HP))), dtype=st.sampled_from(DTYPES))
def test_wrong_dtypes(tmp_path, name, dtype):
    sd = random_book_state_dict(HP)
    sd[name] = sd[name].to(dtype)
    path = tmp_path / "dtype.ckpt"
    torch.save({"model_state_dict": sd, "h_params": HP}, path)
    assert load_outcome(path) is None


@FUZZ
@given(name=st.sampled_from(sorted(random_book_state_dict(HP))),
       shape=st.lists(st.integers(0, 9), min_size=0, max_size=3))
def test_wrong_shapes(tmp_path, name, shape):
    sd = random_book_state_dict(HP)
    if list(sd[name].shape) == shape:
        return
    sd[name] = torch.zeros(shape)
    path = tmp_path / "shape.ckpt"
    torch.save({"model_state_dict": sd, "h_params": HP}, path)
    assert load_outcome(path) is None


@FUZZ
@given(name=st.sampled_from([k for k in sorted(random_book_state_dict(HP)) if "mask" not in k]),
       value=st.sampled_from([math.nan, math.inf, -math.inf]))
def test_nan_and_inf_weights_are_caught_at_the_step(tmp_path, name, value):
    sd = random_book_state_dict(HP)
    sd[name].view(-1)[0] = value
    path = tmp_path / "nan.ckpt"
    torch.save({"model_state_dict": sd, "h_params": HP}, path)
    loaded = load_outcome(path)
    assert loaded is not None
    step_outcome(loaded)


@FUZZ
@given(hp=st.fixed_dictionaries({k: st.one_of(st.integers(-5, 10**9), st.none(), st.text(max_size=3))
                                 for k in ("d_model", "num_heads", "context_length")}))
def test_hostile_h_params(tmp_path, hp):
    path = tmp_path / "hp.ckpt"
    torch.save({"model_state_dict": random_book_state_dict(HP), "h_params": dict(HP, **hp)}, path)
    load_outcome(path)


def test_cli_reports_fuzzed_file_in_one_line(tmp_path, capsys):
    from minigpt.cli.main import main
    path = tmp_path / "bad.ckpt"
    path.write_bytes(VALID[: len(VALID) // 3])
    assert main(["generate", str(path), "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("prompt", ["a\ud800b"])
def test_lone_surrogate_prompt_is_named(tiny_loaded, prompt):
    from minigpt.errors import PromptError
    engine = Engine.from_loaded(tiny_loaded)
    with pytest.raises(PromptError, match="lone surrogate U\\+D800 at character 1"):
        engine.reset(prompt)
