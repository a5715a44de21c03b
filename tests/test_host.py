"""The engine host's loop, in this process over a real pipe: ordered ops, one OpDone
each, cancellation that spares later keys, bugs answered in one line."""

import multiprocessing
import threading

import pytest

from minigpt.host import protocol as p
from minigpt.host.engine_host import Host
from minigpt.settings import SamplingSettings

SETTINGS = SamplingSettings(temperature=0, max_new_tokens=100_000)


class HostHarness:
    def __init__(self, path):
        self.ours, theirs = multiprocessing.Pipe()
        self.stop_runs = multiprocessing.RawValue("q", 0)
        self.stop_all = multiprocessing.RawValue("q", 0)
        self.host = Host(theirs, self.stop_runs, self.stop_all)
        self.thread = threading.Thread(target=self.host.loop, daemon=True)
        self.seq = 0
        self.send(p.Open, path=str(path), device="cpu", settings=SETTINGS)
        self.thread.start()

    def send(self, op_type, **fields) -> int:
        self.seq += 1
        self.ours.send(op_type(self.seq, **fields))
        return self.seq

    def replies_until(self, seq: int) -> list:
        out = []
        while True:
            assert self.ours.poll(60), "the host did not answer"
            reply = self.ours.recv()
            out.append(reply)
            if isinstance(reply, p.OpDone) and reply.seq == seq:
                return out

    def close(self):
        self.send(p.Shutdown)
        self.thread.join(10)


@pytest.fixture
def harness(tiny_ckpt):
    h = HostHarness(tiny_ckpt)
    yield h
    h.close()


def steps_of(replies, seq=None):
    return [s for r in replies if isinstance(r, p.StepsAdded) and (seq is None or r.seq == seq)
            for s in r.steps]


def test_every_op_gets_one_op_done_in_order(harness):
    seqs = [harness.send(p.Generate, prompt="hello", count=3, settings=SETTINGS),
            harness.send(p.Undo, settings=SETTINGS),
            harness.send(p.Take, rank=2, keep_steps=None, settings=SETTINGS),
            harness.send(p.AskWhy, step_index=None, settings=SETTINGS),
            harness.send(p.Peek, settings=SETTINGS)]
    replies = harness.replies_until(seqs[-1])
    done = [r.seq for r in replies if isinstance(r, p.OpDone)]
    assert done == [1, *seqs]  # the Open first
    assert isinstance(replies[0], p.Loading) and any(isinstance(r, p.Ready) for r in replies)
    finished = [r for r in replies if isinstance(r, p.RunFinished)]
    assert [r.reason for r in finished] == ["done", "undo", "picked"]
    assert finished[-1].position == len(harness.host.engine.tokens)
    assert len(steps_of(replies)) == 4  # 3, then 1 picked (the undo sends StepsUndone)


def test_a_bug_in_an_op_is_one_line_and_the_host_serves_on(harness, monkeypatch):
    seq = harness.send(p.Generate, prompt="hello", count=1, settings=SETTINGS)
    harness.replies_until(seq)
    engine = harness.host.engine
    monkeypatch.setattr(engine, "step", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    seq = harness.send(p.Generate, prompt=None, count=1, settings=SETTINGS)
    replies = harness.replies_until(seq)
    [failed] = [r for r in replies if isinstance(r, p.RunFailed)]
    assert failed.message == "internal error: RuntimeError: boom"
    monkeypatch.undo()
    seq = harness.send(p.Generate, prompt=None, count=2, settings=SETTINGS)
    assert len(steps_of(harness.replies_until(seq))) == 2


def test_cancelling_a_run_spares_the_steps_sent_after_it(harness):
    run = harness.send(p.Generate, prompt="hello", count=None, settings=SETTINGS)
    steps = [harness.send(p.Generate, prompt=None, count=1, settings=SETTINGS)
             for _ in range(3)]
    while not steps_of([harness.ours.recv()], run):  # the run is going
        pass
    harness.stop_runs.value = run  # what a key pressed during the run sends
    replies = harness.replies_until(steps[-1])
    finished = {r.seq: r.reason for r in replies if isinstance(r, p.RunFinished)}
    assert finished[run] == "stopped"
    assert [finished[s] for s in steps] == ["step"] * 3
    assert all(len(steps_of(replies, s)) == 1 for s in steps)


def test_stop_all_stops_queued_single_steps_too(harness):
    run = harness.send(p.Generate, prompt="hello", count=None, settings=SETTINGS)
    steps = [harness.send(p.Generate, prompt=None, count=1, settings=SETTINGS)
             for _ in range(3)]
    while not steps_of([harness.ours.recv()], run):
        pass
    harness.stop_all.value = steps[-1]  # escape
    replies = harness.replies_until(steps[-1])
    finished = {r.seq: r.reason for r in replies if isinstance(r, p.RunFinished)}
    assert [finished[s] for s in (run, *steps)] == ["stopped"] * 4
    assert not any(steps_of(replies, s) for s in steps)


def test_an_insight_request_behind_a_newer_one_is_skipped_but_answered(harness):
    run = harness.send(p.Generate, prompt="hello", count=None, settings=SETTINGS)
    while not steps_of([harness.ours.recv()], run):  # the engine is busy: requests queue
        pass
    first = harness.send(p.AskWhy, step_index=1, settings=SETTINGS)
    second = harness.send(p.AskWhy, step_index=2, settings=SETTINGS)
    harness.stop_runs.value = run
    replies = harness.replies_until(second)
    assert [r.seq for r in replies if isinstance(r, p.WhyAnswered)] == [second]
    assert [r.seq for r in replies if isinstance(r, p.OpDone)] == [run, first, second]


def test_an_unloadable_model_fails_in_one_line_and_ops_are_still_answered(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    h = HostHarness(bad)
    try:
        seq = h.send(p.Generate, prompt="hello", count=1, settings=SETTINGS)
        replies = h.replies_until(seq)
        [failed] = [r for r in replies if isinstance(r, p.LoadFailed)]
        assert "bad.ckpt" in failed.message and "\n" not in failed.message
        assert any(isinstance(r, p.RunFailed) and "no model is loaded" in r.message
                   for r in replies)
    finally:
        h.close()


def test_a_run_ends_at_the_end_of_sequence_token_unless_ignored(harness):
    """The explorer's runs stop where the CLI's do: at an eos id (the step that chose it
    is kept), reason "end of text"; ignore_eos goes on."""
    settings = SamplingSettings(temperature=0, max_new_tokens=6)
    seq = harness.send(p.Generate, prompt="hello", count=None, settings=settings)
    free = [s.chosen.id for s in steps_of(harness.replies_until(seq))]
    harness.host.engine.eos_ids = frozenset({free[2]})
    seq = harness.send(p.Generate, prompt="hello", count=None, settings=settings)
    replies = harness.replies_until(seq)
    assert [s.chosen.id for s in steps_of(replies, seq)] == free[:free.index(free[2]) + 1]
    assert [r.reason for r in replies if isinstance(r, p.RunFinished)] == ["end of text"]
    seq = harness.send(p.Generate, prompt="hello", count=None,
                       settings=settings.with_(ignore_eos=True))
    assert [s.chosen.id for s in steps_of(harness.replies_until(seq), seq)] == free


def test_a_single_step_reports_no_speed_even_when_it_ends_the_text(tmp_path):
    """The real-model pass: one space press that met the end of text said "24 tokens · 847
    tok/s" — one token's time, read as a speed. A rate needs a run of tokens."""
    from hf_models import set_eos, write_chat_model

    directory = write_chat_model(tmp_path / "chatml", "chatml")
    greedy = SamplingSettings(temperature=0, max_new_tokens=10, ignore_eos=True)
    h = HostHarness(directory)
    try:
        seq = h.send(p.Generate, prompt="hi", count=3, settings=greedy)
        replies = h.replies_until(seq)
        [run] = [r for r in replies if isinstance(r, p.RunFinished)]
        assert run.reason == "done" and run.tokens_per_second > 0  # a run has a speed
        first = steps_of(replies)[0].chosen.id
    finally:
        h.close()
    set_eos(directory, [first])  # the first token now ends the text
    h = HostHarness(directory)
    try:
        seq = h.send(p.Generate, prompt="hi", count=1, settings=greedy.with_(ignore_eos=False))
        [run] = [r for r in h.replies_until(seq) if isinstance(r, p.RunFinished)]
        assert run.reason == "end of text" and run.tokens_per_second == 0.0
    finally:
        h.close()


def test_escape_stops_a_long_prefill_between_chunks(tmp_path, monkeypatch):
    """The real-model pass: a 103 KB paste gave no feedback for 75 s, and escape took over
    a minute. The prefill runs in chunks, each reported; escape is honoured at the next
    chunk, and the cache keeps what was encoded, so the next step goes on from there."""
    import minigpt.decode.base as base
    from hf_models import write_model
    from minigpt.host.engine_host import Host

    directory = write_model(tmp_path / "llama", "llama", positions=2048)
    monkeypatch.setattr(base, "FIRST_CHUNK", 64)
    monkeypatch.setattr(base, "MAX_CHUNK", 64)  # many chunks, whatever the machine
    reported = Host.prefilled

    def escape_after_the_first_chunk(host, op, done, total):
        host.stop_all.value = op.seq  # what escape does, as the first chunk is reported
        reported(host, op, done, total)

    monkeypatch.setattr(Host, "prefilled", escape_after_the_first_chunk)
    h = HostHarness(directory)
    try:
        prompt = " ".join(["the cat sat on the mat"] * 150)
        seq = h.send(p.Generate, prompt=prompt, count=None, settings=SETTINGS)
        replies = h.replies_until(seq)
        progress = [r for r in replies if isinstance(r, p.Prefilling)]
        [run] = [r for r in replies if isinstance(r, p.RunFinished)]
        assert [(r.done, r.total) for r in progress] == [(64, progress[0].total)]
        assert progress[0].total > 1000  # the whole prompt, in chunks of 64
        assert run.reason == "stopped" and not steps_of(replies)
        assert h.host.engine.decoder.cached_ids == h.host.engine.tokens[:64]
    finally:
        h.close()


def test_a_long_op_says_it_is_alive(tiny_ckpt, monkeypatch):
    """While an op runs the host says Alive about once a second, so the explorer can tell
    a busy engine from a stuck one (a SIGSTOPped engine says nothing)."""
    import time

    from minigpt.engine.engine import Engine

    real_peek = Engine.peek

    def slow_peek(engine):
        time.sleep(2.5)  # a long prefill, say: no step to report for seconds
        return real_peek(engine)

    h = HostHarness(tiny_ckpt)
    try:
        h.replies_until(h.send(p.Generate, prompt="hello", count=0, settings=SETTINGS))
        monkeypatch.setattr(Engine, "peek", slow_peek)
        seq = h.send(p.Peek, settings=SETTINGS)
        replies = h.replies_until(seq)
        assert [type(r) for r in replies].count(p.Alive) >= 2
        assert all(r.seq == seq for r in replies if isinstance(r, p.Alive))
        monkeypatch.setattr(Engine, "peek", real_peek)
        time.sleep(1.5)  # idle: nothing is said
        assert not h.ours.poll(0.1)
    finally:
        h.close()
