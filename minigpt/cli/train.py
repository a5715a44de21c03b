"""``minigpt train``: the book's chapter-19 training loop, saved in the book's format.

cl100k tokens, ``max_token_value`` = largest id + 1, a 90/10 split, random
windows, AdamW, periodic train/valid loss. The checkpoint is written to a
temporary file and renamed, so an interrupted run never leaves half a file.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from minigpt.models.devices import keep_freed_memory, resolve_device
from minigpt.errors import MiniGPTError, SettingsError
from minigpt.cli.train_options import TrainConfig, available_memory, check_training_fits
from minigpt.models.book import Model
from minigpt.paths import read_text_file
from minigpt.text.tokenizer import cl100k


@dataclass
class Progress:
    step: int
    max_iters: int
    train_loss: float | None
    valid_loss: float | None


# The book's corpora are a few MB; past this, tokenizing alone took gigabytes and
# tiktoken panicked under a 2 GiB limit.
CORPUS_LIMIT = 64 << 20


def read_corpus(data_path: Path, config: TrainConfig) -> list[int]:
    """The file's cl100k token ids; checks the settings and that there is enough text."""
    config.validate()
    try:
        text = read_text_file(data_path, CORPUS_LIMIT, "training corpus")
    except PermissionError as exc:
        raise MiniGPTError(f"{data_path}: not a readable text file ({exc.strerror})") from None
    tokens = cl100k().encode(text)
    C = config.context_length
    if len(tokens) < 2 * (C + 1) * 10:
        raise SettingsError(f"{data_path}: {len(tokens)} tokens is too little text for "
                            f"--context-length {C} (need ≥ {2 * (C + 1) * 10})")
    return tokens


def train(tokens: list[int], config: TrainConfig,
          on_progress: Callable[[Progress], None] = lambda p: None,
          on_snapshot: Callable[[int, Model, dict], None] | None = None,
          save_every: int = 0) -> tuple[Model, dict]:
    """Train on token ids; return (model on cpu, book h_params). KeyboardInterrupt passes.
    ``on_snapshot(iteration, model, h_params)`` every ``save_every`` iterations."""
    config.validate()
    device = resolve_device(config.device)
    if device.type == "cpu":
        keep_freed_memory()
    torch.manual_seed(config.seed)
    C = config.context_length
    h_params = {
        "d_model": config.d_model, "batch_size": config.batch_size, "context_length": C,
        "num_blocks": config.num_blocks, "num_heads": config.num_heads,
        "dropout": config.dropout, "max_iters": config.max_iters,
        "learning_rate": config.learning_rate, "eval_interval": config.eval_interval,
        "eval_iters": config.eval_iters, "device": device.type, "TORCH_SEED": config.seed,
        "max_token_value": max(tokens) + 1,
    }
    data = torch.tensor(tokens, dtype=torch.long)
    split = int(len(data) * 0.9)
    splits = {"train": data[:split], "valid": data[split:]}

    def get_batch(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        part = splits[name]
        starts = torch.randint(0, len(part) - C, (config.batch_size,))
        x = torch.stack([part[i:i + C] for i in starts])
        y = torch.stack([part[i + 1:i + C + 1] for i in starts])
        return x.to(device), y.to(device)

    model = Model(h_params).to(device)

    @torch.no_grad()
    def estimate_loss() -> dict[str, float]:
        model.eval()
        out = {}
        for name in splits:
            losses = [model(*get_batch(name))[1].item() for _ in range(config.eval_iters)]
            out[name] = sum(losses) / len(losses)
        model.train()
        return out

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    losses: dict[str, float] = {}
    kept = None  # (step, state dict, losses) at the last estimate whose losses were finite
    for step in range(config.max_iters):
        if step % config.eval_interval == 0 or step == config.max_iters - 1:
            losses = estimate_loss()
            if not all(math.isfinite(v) for v in losses.values()):
                return diverged(model, h_params, kept, step)
            kept = (step, {k: v.detach().to("cpu", copy=True)
                           for k, v in model.state_dict().items()}, losses)
        xb, yb = get_batch("train")
        _, loss = model(xb, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        on_progress(Progress(step + 1, config.max_iters, losses.get("train"), losses.get("valid")))
        if on_snapshot is not None and save_every and (step + 1) % save_every == 0:
            on_snapshot(step + 1, model, {**h_params, "iter_num": step + 1,
                                          "train_loss": round(losses["train"], 4),
                                          "valid_loss": round(losses["valid"], 4)})
    if not all(torch.isfinite(p).all() for p in model.parameters()):  # the last steps
        return diverged(model, h_params, kept, config.max_iters)
    h_params["final_train_loss"] = round(losses["train"], 4)
    h_params["final_valid_loss"] = round(losses["valid"], 4)
    return model.cpu().eval(), h_params


def diverged(model: Model, h_params: dict, kept, step: int) -> tuple[Model, dict]:
    """The loss stopped being finite (a learning rate far too high): the model as it was
    at the last finite estimate, with ``diverged_at_step`` saying so."""
    kept_step, state, losses = kept
    model.load_state_dict(state)
    h_params.update(final_train_loss=round(losses["train"], 4),
                    final_valid_loss=round(losses["valid"], 4), diverged_at_step=step,
                    kept_step=kept_step)
    return model.cpu().eval(), h_params


def check_out(out: Path, force: bool = False, snapshots: tuple[Path, ...] = ()) -> None:
    """Before training: ``--out`` must be a file we can write (a finished model must
    never be thrown away for a bad path), and no model is replaced unless asked: from
    the repository's root the default is the shipped model."""
    if out.is_dir():
        raise SettingsError(f"--out {out}: is a directory; name the checkpoint file, "
                            f"e.g. {out / 'model.ckpt'}")
    if out.exists() and not out.is_file():
        raise SettingsError(f"--out {out}: not a regular file")
    if not force:
        for path in (out, *snapshots):
            if path.exists():
                raise SettingsError(f"{path} exists: pass --force to replace it, or name "
                                    "another file with --out")
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the directories save will create start here
    if not os.access(folder, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise SettingsError(f"--out {out}: cannot write there (permission denied)")


def save_checkpoint(model: Model, h_params: dict, out: Path, dtype: str = "float32") -> None:
    """Book format, written atomically: a temporary file, fsynced, then renamed, so a
    crash leaves the old file or the new one, and no temporary file behind."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}  # opens anywhere
    if dtype == "float16":
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save({"model_state_dict": state, "h_params": h_params}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def save_error(exc: Exception) -> str:
    """One line for a failed save; torch's 'enforce fail … unexpected pos' is a full disk
    (its zip writer turns ENOSPC into that)."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    text = str(exc)
    return "the disk is full (the write stopped short)" if "unexpected pos" in text or \
        "enforce fail" in text else text.splitlines()[0][:200]


def save_somewhere(model: Model, h_params: dict, out: Path, dtype: str) -> Path:
    """Save to ``out``; if that fails after all (the disk filled, the directory went),
    next to it, then in the temporary directory. Returns where it went; raises a
    one-line error only when every place failed."""
    import tempfile

    fallbacks = [out.with_name(f"{out.stem}.rescued-{os.getpid()}{out.suffix}"),
                 Path(tempfile.gettempdir()) / f"minigpt-rescued-{os.getpid()}.ckpt"]
    errors = []
    for place in (out, *fallbacks):
        try:
            save_checkpoint(model, h_params, place, dtype)
            return place
        except (OSError, RuntimeError) as exc:  # torch reports ENOSPC as a RuntimeError
            errors.append(f"{place}: {save_error(exc)}")
    raise MiniGPTError("could not save the trained model anywhere: " + "; ".join(errors))


def snapshot_path(out: Path, iteration: int) -> Path:
    return out.parent / f"ckpt-iter{iteration}.ckpt"


def cmd_train(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress as Bar, TextColumn, TimeRemainingColumn

    fields = {k: getattr(args, k) for k in asdict(TrainConfig()) if hasattr(args, k)}
    config = TrainConfig(**fields)
    tokens = read_corpus(args.data, config)  # errors before the progress bar appears
    if resolve_device(config.device).type == "cpu":  # a GPU's memory is its own
        check_training_fits(config, max(tokens) + 1, available_memory())
    if args.save_every < 0:
        raise SettingsError("--save-every must be ≥ 0 (0: no snapshots)")
    check_out(args.out, args.force, tuple(
        snapshot_path(args.out, i)
        for i in range(args.save_every, config.max_iters + 1, args.save_every or 1)
        if args.save_every))
    console = Console(stderr=True)
    started = time.perf_counter()
    columns = (TextColumn("step {task.completed}/{task.total}"), BarColumn(),
               TextColumn("{task.fields[losses]}"), TimeRemainingColumn())
    with Bar(*columns, console=console) as bar:
        task = bar.add_task("train", total=config.max_iters, losses="")

        def show(p: Progress) -> None:
            losses = "" if p.train_loss is None else \
                f"train {p.train_loss:.3f} · valid {p.valid_loss:.3f}"
            bar.update(task, completed=p.step, losses=losses)
            if not console.is_terminal and losses != show.last:  # logs get a line per estimate
                console.print(f"step {p.step}/{p.max_iters} · {losses}")
                show.last = losses

        show.last = ""

        def snapshot(iteration: int, model: Model, h_params: dict) -> None:
            """A book-format checkpoint of the run so far, next to --out (compare them)."""
            path = snapshot_path(args.out, iteration)
            try:
                save_checkpoint(model, h_params, path, config.dtype)
            except (OSError, RuntimeError) as exc:  # a lost snapshot must not end the run
                console.print(f"snapshot {path} not saved: {save_error(exc)}; training "
                              "goes on", markup=False, soft_wrap=True)
                return
            if not console.is_terminal:
                console.print(f"saved {path}", markup=False)

        try:
            model, h_params = train(tokens, config, show, snapshot, args.save_every)
        except KeyboardInterrupt:
            bar.stop()
            console.print(f"interrupted: no checkpoint written ({args.out} is unchanged)")
            return 130
    if "diverged_at_step" in h_params:
        console.print(f"the loss stopped being finite by step {h_params['diverged_at_step']} "
                      f"(is --learning-rate {config.learning_rate:g} too high?): training "
                      f"stopped; the model of step {h_params['kept_step']} is kept",
                      markup=False, soft_wrap=True)
    saved = save_somewhere(model, h_params, args.out, config.dtype)
    if saved != args.out:
        console.print(f"could not write {args.out}: saved the model to {saved} instead",
                      soft_wrap=True, markup=False)
    size = saved.stat().st_size / 2**20
    console.print(f"saved {saved} ({size:.1f} MiB) · train loss {h_params['final_train_loss']}"
                  f" · valid loss {h_params['final_valid_loss']} · "
                  f"{time.perf_counter() - started:.0f} s")
    return 0 if saved == args.out else 1  # a script must see the model is not at --out
