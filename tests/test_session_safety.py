"""The session file is never a way to damage another file, and two explorers sharing one
never tear or lose each other's records, even on a full disk."""

import errno
import json
import multiprocessing
import os
import time

import pytest

from minigpt.host.session import append_record, read_session_counting


@pytest.mark.parametrize("kind", ["symlink to a file", "symlink loop", "not a session file"])
def test_a_session_path_that_is_not_a_session_file_is_refused(tiny_ckpt, tmp_path, capsys,
                                                              kind):
    from tui.__main__ import main

    target = tmp_path / "passwd"
    target.write_text("root:x:0:0:root:/root:/bin/bash\n" * 24)
    before = target.read_bytes()
    session = tmp_path / "s.jsonl"
    if kind == "symlink to a file":
        session.symlink_to(target)
    elif kind == "symlink loop":
        session.symlink_to(session)
    else:
        session = target
    assert main([str(tiny_ckpt), "--session", str(session)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("minigpt-tui: error:")
    assert ("symbolic link" if "symlink" in kind else "not a session file") in err
    assert target.read_bytes() == before


def test_an_append_never_follows_a_symlink(tmp_path):
    target = tmp_path / "target"
    target.write_text("keep\n")
    (tmp_path / "s.jsonl").symlink_to(target)
    with pytest.raises(OSError):
        append_record(tmp_path / "s.jsonl", {"turn": "t", "prompt": "p"})
    assert target.read_text() == "keep\n"


def writer(path, name, count, failing, saved):
    """Append ``count`` records; with ``failing``, every third write hits a full disk."""
    real_write = os.write
    calls = [0]

    def flaky_write(fd, data):
        calls[0] += 1
        if failing and calls[0] % 3 == 0:
            real_write(fd, data[: len(data) // 2])  # a short write, then the disk is full
            time.sleep(0.002)  # the other writer appends meanwhile (unless it must wait)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    os.write = flaky_write
    for i in range(count):
        try:
            append_record(path, {"turn": f"{name}-{i}", "prompt": "x" * 2000})
            saved.put(f"{name}-{i}")
        except OSError:
            pass
    saved.put(None)


def test_two_writers_on_a_full_disk_lose_nothing_they_saved(tmp_path):
    """The cut-back after a failed write (ftruncate) cut off the other writer's record."""
    path = tmp_path / "shared.jsonl"
    context = multiprocessing.get_context("fork")
    saved = context.Queue()
    writers = [context.Process(target=writer, args=(path, name, 150, name == "b", saved))
               for name in ("a", "b")]
    for w in writers:
        w.start()
    reported, done = set(), 0
    while done < 2:
        item = saved.get(timeout=60)
        if item is None:
            done += 1
        else:
            reported.add(item)
    for w in writers:
        w.join(10)
    turns, skipped = read_session_counting(path)
    assert skipped == 0  # no torn line
    assert {t["turn"] for t in turns} == reported  # every saved record, nothing else
    assert all(json.loads(line) for line in path.read_text().splitlines())


async def test_a_turn_the_disk_refused_is_marked_and_rescued_on_quit(make_tui, tmp_path,
                                                                     monkeypatch):
    """A full disk: a 6-second toast, then ctrl+q exited 0 and the turn was gone."""
    import tempfile

    import minigpt.host.session as session_module
    from conftest import settle, screen_text

    def full_disk(path, record):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(session_module, "append_record", full_disk)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    app = make_tui(session_path=tmp_path / "s.jsonl", max_new_tokens=3)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press(*"abc", "enter")
        await settle(app, pilot)
        assert "✗ 1 unsaved" in screen_text(app).splitlines()[0]  # stays, unlike a toast
        # The count is the true one: it said "✗ 1 unsaved" with 3 or 4 turns waiting.
        for turn, prompt in enumerate(("def", "ghi"), 2):
            app.query_one("#prompt").value = prompt
            await pilot.press("enter")
            await settle(app, pilot)
            assert f"✗ {turn} unsaved" in screen_text(app).splitlines()[0]
        await pilot.press("ctrl+q")
    assert app.return_code == 1
    assert app.exit_note.startswith(f"3 turns could not be saved to {tmp_path / 's.jsonl'}: "
                                    "written to ")
    rescued = tmp_path / app.exit_note.rsplit("/", 1)[1]
    records = [json.loads(line) for line in rescued.read_text().splitlines()]
    assert [r["prompt"] for r in records] == ["abc", "def", "ghi"]
    assert all(len(r["tokens"]) == 3 for r in records)


def test_a_huge_session_opens_in_bounded_time_and_memory(tmp_path):
    """1 GB of 97k turns: no frame after 5 minutes, 7.6 GB. Reopening reads the tail."""
    import tracemalloc

    from minigpt.host.session import REOPEN_TAIL_BYTES, read_session_tail

    path = tmp_path / "big.jsonl"
    line = json.dumps({"turn": "x", "prompt": "p", "tokens": [1] * 3000}) + "\n"
    with open(path, "w") as f:
        for i in range(1200):  # about 11 MB here; the bound is what matters, not the size
            f.write(line.replace('"x"', f'"t{i}"'))
    assert path.stat().st_size > REOPEN_TAIL_BYTES
    tracemalloc.start()
    turns, skipped, older = read_session_tail(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert older and skipped == 0 and turns[-1]["turn"] == "t1199"
    assert len(turns) < 1200 and peak < 8 * REOPEN_TAIL_BYTES


async def test_the_explorer_says_older_turns_were_not_read(make_tui, tmp_path):
    from conftest import screen_text, settle

    app = make_tui(session_path=tmp_path / "s.jsonl")
    app.older_unread = True
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert "older turns of this session are in its file, not shown" in screen_text(app)
