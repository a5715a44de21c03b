"""Branches: undo and take-candidate keep the abandoned path; switching restores it exactly."""

import math

import pytest

from minigpt.branches import BranchBook, path_ids, path_log_prob, path_text
from minigpt.engine.engine import Engine
from minigpt.settings import SamplingSettings


@pytest.fixture
def engine(tiny_loaded):
    e = Engine.from_loaded(tiny_loaded, SamplingSettings(temperature=1.0, seed=7))
    e.reset("农夫山泉 ")
    return e


def leave_and_undo(book, engine, n=1):
    """What the explorer does on each ``StepsUndone``: keep the path being left."""
    for _ in range(n):
        book.leave(engine.steps, engine.sampler_state())
        engine.undo()


def test_undo_keeps_one_branch_for_the_abandoned_path(engine):
    book = BranchBook()
    list(engine.run(6))
    original = tuple(engine.steps)
    leave_and_undo(book, engine, 4)
    assert book.paths == [original]  # prefixes of it add nothing
    assert book.alternatives(tuple(engine.steps)) == [original]


def test_take_candidate_keeps_the_path_it_left(engine):
    book = BranchBook()
    list(engine.run(5))
    original = tuple(engine.steps)
    third = original[2]
    other = next(c.id for c in third.candidates if c.id != third.chosen.id)
    leave_and_undo(book, engine, 3)
    engine.step(other)
    book.grew()
    list(engine.run(2))
    assert book.alternatives(tuple(engine.steps)) == [original]


def test_restoring_a_branch_gives_text_candidates_and_state_exactly(tiny_loaded, engine):
    list(engine.run(6))
    first = tuple(engine.steps)
    first_text = engine.completion
    for _ in range(3):
        engine.undo()
    alt = next(c.id for c in first[3].candidates if c.id != first[3].chosen.id)
    engine.step(alt)
    list(engine.run(4))

    engine.restore("农夫山泉 ", first)
    assert tuple(engine.steps) == first and engine.completion == first_text
    assert engine.tokens == engine.prompt_ids + path_ids(first)

    fresh = Engine.from_loaded(tiny_loaded, SamplingSettings(temperature=1.0, seed=7))
    fresh.reset("农夫山泉 ")
    for token_id in path_ids(first):
        fresh.step(token_id)
    for ours, theirs in [(engine.peek(), fresh.peek()),  # as a fresh run on that text
                         (engine.step(fresh.peek().candidates[2].id),
                          fresh.step(fresh.peek().candidates[2].id))]:
        assert [c.id for c in ours.candidates] == [c.id for c in theirs.candidates]
        assert [c.prob for c in ours.candidates] == \
            pytest.approx([c.prob for c in theirs.candidates], rel=1e-5)

    engine.restore("农夫山泉 ", first[:2])  # a prefix: back to that point
    assert tuple(engine.steps) == first[:2]


def test_the_engine_keeps_no_branch_tree(engine):
    """Sequence in, step out: the branch tree is the explorer's (``BranchBook``)."""
    list(engine.run(3))
    engine.undo()
    assert not any("branch" in name for name in vars(engine))


def test_switch_back_and_forth_keeps_both():
    from minigpt.engine.engine import Candidate, Step

    def step(i, token):
        c = Candidate(token, str(token), 0.5, True, False)
        return Step(i, i, (c,), c, 1, b"x", "x", False, 0.0, 1)
    a = (step(1, 1), step(2, 2))
    b = (step(1, 1), step(2, 3))
    book = BranchBook()
    book.leave(a)
    book.arrived(b[:1])
    assert book.current_kept  # a prefix of a kept path
    book.grew()
    for here, there in [(b, a), (a, b), (b, a)]:
        book.leave(here)
        book.arrived(there)
    assert book.alternatives(a) == [b] and book.alternatives(b) == [a]


def test_log_prob_and_text():
    from minigpt.engine.engine import Candidate, Step
    def step(i, prob, text):
        c = Candidate(i, text, prob, True, False)
        return Step(i, i, (c,), c, 1, text.encode(), text, False, 0.0, 1)
    path = (step(1, 0.5, "a"), step(2, 0.25, "b"))
    assert path_log_prob(path) == pytest.approx(math.log(0.5) + math.log(0.25))
    assert path_text(path) == "ab" and path_ids(path) == [1, 2]
    book = BranchBook()
    book.keep(path[:1])
    book.keep(path)
    book.keep(path[:1])
    assert book.paths == [path]


def test_returning_to_a_whole_branch_resumes_its_sampling(tiny_loaded, engine):
    """Seeded sampling continues on a restored branch exactly as if it had never been
    left: the sampler's state travels with the branch (StepsUndone carries it)."""
    straight = Engine.from_loaded(tiny_loaded, SamplingSettings(temperature=1.0, seed=7))
    straight.reset("农夫山泉 ")
    expected = [s.chosen.id for s in straight.run(9)]

    book = BranchBook()
    list(engine.run(6))
    left = tuple(engine.steps)
    leave_and_undo(book, engine, 2)
    engine.step(left[4].candidates[-1].id)
    list(engine.run(3))  # this path consumed random numbers of its own
    engine.restore("农夫山泉 ", left, book.sampler_state(left))
    assert [s.chosen.id for s in engine.run(3)] == expected[6:]


def test_a_long_rewind_keeps_the_path_once(engine, monkeypatch):
    """Rewinding n steps copies and compares the path once, not n times."""
    book = BranchBook()
    list(engine.run(30))
    kept = []
    real = book.keep
    monkeypatch.setattr(book, "keep", lambda path, state=None: kept.append(tuple(path))
                        or real(path, state))
    leave_and_undo(book, engine, 25)
    assert len(kept) == 1 and len(kept[0]) == 30
    engine.step()
    book.grew()
    leave_and_undo(book, engine)  # a new step made a path not kept yet
    assert len(kept) == 2 and len(book.paths) == 2


def test_pending_display_is_what_the_engine_shows(tiny_loaded):
    from minigpt.branches import pending_display

    e = Engine.from_loaded(tiny_loaded, SamplingSettings(temperature=0))
    e.reset("农夫山泉")
    path = tuple(e.step(i) for i in (9085, 240))  # b' \xe8', b'\x92': two of three bytes
    assert e.pending_display == pending_display(path) == "‹e8 92›"
    assert pending_display(path[:0]) == ""


def test_a_branch_of_a_space_and_byte_pieces_shows_what_it_adds(tiny_loaded):
    """The hands-on pass: a branch that adds ' ' plus byte pieces showed no text in the
    tree, and its export read like its parent. Both now show the pieces it adds."""
    from minigpt.host.session import branch_records, export_markdown
    from tui.branches import label

    e = Engine.from_loaded(tiny_loaded, SamplingSettings(temperature=0))
    e.reset("农夫山泉")
    current = tuple(e.step(i) for i in (41766, 102, 61994))  # ' 天', '然': ' 天然'
    e.restore("农夫山泉", ())
    branch = tuple(e.step(i) for i in (9085, 240))  # b' \xe8', b'\x92': a space, pieces
    assert path_text(branch) == " "  # the characters it completes: nothing to see
    text = label(branch, 0, False).plain
    assert text.startswith("' ‹e8 92›'  Σ log p"), text
    [record] = branch_records(current, [branch])
    assert record["adds"] == " ‹e8 92›" and record["diverges_at_step"] == 1
    markdown = export_markdown([{"prompt": "农夫山泉", "steps": [], "branches": [record],
                                 "settings": {}, "model": "m", "turn": "t"}])
    assert "(from there: `' ‹e8 92›'`)" in markdown
