"""`minigpt train`: the book's loop on a tiny file, checkpoints that read back
exactly, clean Ctrl-C, one-line errors."""

from pathlib import Path

import pytest
import torch

from minigpt.cli import train as train_module
from minigpt.models.checkpoint import load
from minigpt.cli.main import main
from minigpt.text.tokenizer import cl100k
from minigpt.cli.train import TrainConfig, read_corpus, save_checkpoint, train

CATALOG = Path(__file__).resolve().parent.parent / "data" / "orders.txt"
BOOK_KEYS = {"d_model", "batch_size", "context_length", "num_blocks", "num_heads", "dropout",
             "max_iters", "learning_rate", "eval_interval", "eval_iters", "device",
             "TORCH_SEED", "max_token_value"}
TINY = dict(d_model=16, num_blocks=1, num_heads=2, context_length=8, batch_size=4,
            max_iters=3, eval_interval=2, eval_iters=1, dropout=0.0, device="cpu")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "orders.txt"
    lines = CATALOG.read_text(encoding="utf-8").splitlines()[:80]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny_args(**overrides) -> list[str]:
    knobs = {**TINY, **overrides}
    return [arg for k, v in knobs.items() for arg in ("--" + k.replace("_", "-"), str(v))]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_checkpoint_reads_back_with_identical_logits(corpus, tmp_path, dtype):
    config = TrainConfig(**TINY, dtype=dtype)
    model, h_params = train(read_corpus(corpus, config), config)
    out = tmp_path / "m.ckpt"
    save_checkpoint(model, h_params, out, dtype)
    loaded = load(out, device="cpu")
    ids = torch.tensor([cl100k().encode("农夫山泉 东方树叶")[-TINY["context_length"]:]])
    if dtype == "float16":  # what was stored is the half-precision weights
        model.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    with torch.no_grad():
        assert torch.equal(loaded.model(ids)[0], model(ids)[0])
    stored = torch.load(out, weights_only=True)
    assert set(stored) == {"model_state_dict", "h_params"}
    assert {v.dtype for v in stored["model_state_dict"].values()} == {getattr(torch, dtype)}


def test_h_params_hold_every_book_key(corpus):
    _, h_params = train(read_corpus(corpus, TrainConfig(**TINY)), TrainConfig(**TINY))
    assert BOOK_KEYS <= set(h_params)
    assert h_params["device"] == "cpu" and h_params["TORCH_SEED"] == 1337
    ids = cl100k().encode(corpus.read_text(encoding="utf-8"))
    assert h_params["max_token_value"] == max(ids) + 1
    assert h_params["final_valid_loss"] > 0


def test_training_lowers_the_loss(corpus):
    tokens = read_corpus(corpus, TrainConfig(**TINY))
    _, trained = train(tokens, TrainConfig(**{**TINY, "max_iters": 60, "eval_interval": 59,
                                               "eval_iters": 4, "learning_rate": 3e-3}))
    _, untrained = train(tokens, TrainConfig(**{**TINY, "max_iters": 1, "eval_iters": 4}))
    assert trained["final_train_loss"] < untrained["final_train_loss"] - 1.0


def test_cli_train_writes_loadable_checkpoint(corpus, tmp_path, capsys):
    out = tmp_path / "nested" / "model.ckpt"
    assert main(["train", str(corpus), "--out", str(out), *tiny_args()]) == 0
    assert "saved" in capsys.readouterr().err
    assert load(out, device="cpu").h_params["d_model"] == 16
    assert [p.name for p in out.parent.iterdir()] == ["model.ckpt"]  # no temporary left


def test_ctrl_c_leaves_the_old_checkpoint_untouched(corpus, tmp_path, monkeypatch, capsys):
    out = tmp_path / "model.ckpt"
    out.write_bytes(b"previous")
    calls = {"n": 0}
    real_forward = train_module.Model.forward

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(train_module.Model, "forward", interrupted)
    code = main(["train", str(corpus), "--out", str(out), "--force",
                 *tiny_args(max_iters=50)])
    assert code == 130
    assert "no checkpoint written" in capsys.readouterr().err
    assert out.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]


@pytest.mark.parametrize("args, fragment", [
    (["--num-heads", "3"], "divisible"),
    (["--max-iters", "0"], "--max-iters"),
    (["--learning-rate", "nan"], "--learning-rate"),
    (["--dropout", "1.5"], "--dropout"),
    (["--context-length", "4000"], "too little text"),
])
def test_bad_settings_are_one_line_errors(corpus, tmp_path, capsys, args, fragment):
    code = main(["train", str(corpus), "--out", str(tmp_path / "m.ckpt"), *tiny_args(), *args])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.ckpt").exists()


def test_missing_data_file_is_one_line_error(tmp_path, capsys):
    code = main(["train", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "m.ckpt")])
    err = capsys.readouterr().err
    assert code == 2 and "no such file" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("kind", ["directory", "fifo corpus"])
def test_bad_out_or_corpus_is_refused_before_training(corpus, tmp_path, capsys, monkeypatch,
                                                     kind):
    import os
    trained = []
    monkeypatch.setattr(train_module, "train", lambda *a: trained.append(1))
    data, out = corpus, tmp_path
    if kind == "fifo corpus":
        data, out = tmp_path / "fifo", tmp_path / "m.ckpt"
        os.mkfifo(data)
    assert main(["train", str(data), "--out", str(out), *tiny_args()]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and not trained
    assert ("is a directory" if kind == "directory" else "not a regular file") in err


def test_a_failed_save_keeps_the_model_next_to_it(corpus, tmp_path, capsys, monkeypatch):
    """The disk fills while saving: the trained model goes to a fallback path, said in one
    line, and no temporary file is left behind."""
    out = tmp_path / "model.ckpt"
    real_save = torch.save
    calls = []

    def full_disk(obj, f, *a, **k):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(train_module.torch, "save", full_disk)
    # Not where --out said: a script must see it (it exited 0).
    assert main(["train", str(corpus), "--out", str(out), *tiny_args()]) == 1
    err = capsys.readouterr().err
    assert f"could not write {out}: saved the model to" in err
    [rescued] = [p for p in tmp_path.iterdir()]
    assert rescued.name.startswith("model.rescued-") and not out.exists()
    assert load(rescued, device="cpu").h_params["d_model"] == 16


def test_the_default_out_never_replaces_a_model(corpus, tmp_path, capsys, monkeypatch):
    """From the repository's root ``model/model.ckpt`` is the shipped model: train without
    --out refuses it in one line before training; --force replaces it."""
    trained = []
    real_train = train_module.train
    monkeypatch.setattr(train_module, "train", lambda *a: trained.append(1) or real_train(*a))
    monkeypatch.chdir(tmp_path)
    shipped = tmp_path / "model" / "model.ckpt"
    shipped.parent.mkdir()
    shipped.write_bytes(b"the shipped model")
    assert main(["train", str(corpus), *tiny_args()]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model/model.ckpt exists" in err and "--force" in err
    assert shipped.read_bytes() == b"the shipped model" and not trained
    assert main(["train", str(corpus), "--force", *tiny_args()]) == 0
    assert trained and load(shipped, device="cpu").h_params["d_model"] == 16


def test_snapshots_never_replace_earlier_ones(corpus, tmp_path, capsys):
    (tmp_path / "ckpt-iter2.ckpt").write_bytes(b"an earlier run")
    code = main(["train", str(corpus), "--out", str(tmp_path / "new.ckpt"), "--save-every", "2",
                 *tiny_args(max_iters=4)])
    assert code == 2 and "ckpt-iter2.ckpt exists" in capsys.readouterr().err
    assert (tmp_path / "ckpt-iter2.ckpt").read_bytes() == b"an earlier run"
    assert not (tmp_path / "new.ckpt").exists()


def test_help_states_the_default_out(capsys):
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "default: model/model.ckpt in the current directory" in text and "--force" in text


def torch_full_disk(monkeypatch, failures: int):
    """torch.save on a full disk: its zip writer raises a RuntimeError, not an OSError."""
    real_save = torch.save
    calls = []

    def save(obj, f, *a, **k):
        calls.append(1)
        if len(calls) <= failures:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos "
                               "1234 vs 5678")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(train_module.torch, "save", save)
    return calls


def test_torch_s_full_disk_error_still_keeps_the_model(corpus, tmp_path, capsys, monkeypatch):
    torch_full_disk(monkeypatch, failures=1)
    out = tmp_path / "model.ckpt"
    assert main(["train", str(corpus), "--out", str(out), *tiny_args()]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"could not write {out}: saved the model to" in err
    [rescued] = list(tmp_path.iterdir())
    assert load(rescued, device="cpu").h_params["d_model"] == 16


def test_a_failed_snapshot_is_said_and_training_goes_on(corpus, tmp_path, capsys, monkeypatch):
    torch_full_disk(monkeypatch, failures=1)  # the first snapshot
    out = tmp_path / "model.ckpt"
    assert main(["train", str(corpus), "--out", str(out), "--save-every", "2",
                 *tiny_args(max_iters=4)]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "ckpt-iter2.ckpt not saved: the disk is full" in err and "training goes on" in err
    assert (tmp_path / "ckpt-iter4.ckpt").exists() and load(out, device="cpu")


@pytest.mark.parametrize("args", [["--d-model", "100000", "--num-heads", "1"],
                                  ["--batch-size", "100000000"],
                                  ["--num-blocks", "1000000"]])
def test_settings_too_big_to_train_are_refused_before_allocating(corpus, tmp_path, capsys,
                                                                 monkeypatch, args):
    trained = []
    monkeypatch.setattr(train_module, "train", lambda *a: trained.append(1))
    code = main(["train", str(corpus), "--out", str(tmp_path / "m.ckpt"),
                 *tiny_args(), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "GiB to train" in err and not trained


def test_the_estimate_lets_the_book_defaults_train():
    from minigpt.cli.train_options import check_training_fits, training_bytes
    config = TrainConfig()
    assert training_bytes(config, 100_256) < 2 << 30  # the book's run: well under 2 GiB
    check_training_fits(config, 100_256, 2 << 30)


def test_a_loss_that_stops_being_finite_keeps_the_last_finite_model(corpus, tmp_path, capsys):
    """--learning-rate 1e30 saved an all-NaN model with exit 0."""
    out = tmp_path / "m.ckpt"
    code = main(["train", str(corpus), "--out", str(out),
                 *tiny_args(max_iters=6, eval_interval=2, learning_rate=1e30)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 0 and "the loss stopped being finite by step" in err
    loaded = load(out, device="cpu")
    assert all(torch.isfinite(v).all() for v in loaded.model.state_dict().values())
    assert loaded.h_params["kept_step"] < loaded.h_params["diverged_at_step"]
