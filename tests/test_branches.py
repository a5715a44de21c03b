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


def test_undo_keeps_one_branch_for_the_abandoned_path(engine):
    list(engine.run(6))
    original = tuple(engine.steps)
    for _ in range(4):
        engine.undo()
    assert engine.branches.paths == [original]  # prefixes of it add nothing
    assert engine.branches.alternatives(tuple(engine.steps)) == [original]


def test_take_candidate_keeps_the_path_it_left(engine):
    list(engine.run(5))
    original = tuple(engine.steps)
    third = original[2]
    other = next(c.id for c in third.candidates if c.id != third.chosen.id)
    engine.undo(), engine.undo(), engine.undo()
    engine.step(other)
    list(engine.run(2))
    assert engine.branches.alternatives(tuple(engine.steps)) == [original]


def test_switching_restores_text_candidates_and_state_exactly(tiny_loaded, engine):
    list(engine.run(6))
    first = tuple(engine.steps)
    first_text = engine.completion
    for _ in range(3):
        engine.undo()
    alt = next(c.id for c in first[3].candidates if c.id != first[3].chosen.id)
    engine.step(alt)
    list(engine.run(4))
    second = tuple(engine.steps)

    undone, added = engine.switch_to(first)
    assert [s.chosen.id for s in undone] == path_ids(second[3:])[::-1]
    assert added == list(first[3:])
    assert tuple(engine.steps) == first and engine.completion == first_text
    assert engine.tokens == engine.prompt_ids + path_ids(first)
    assert second in engine.branches.alternatives(first)  # the path left is kept too

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

    engine.switch_to(first[:2])  # a prefix: back to that point
    assert tuple(engine.steps) == first[:2]


def test_switch_back_and_forth_keeps_both(engine):
    list(engine.run(4))
    a = tuple(engine.steps)
    engine.undo()
    engine.step(next(c.id for c in a[3].candidates if c.id != a[3].chosen.id))
    b = tuple(engine.steps)
    engine.switch_to(a)
    engine.switch_to(b)
    engine.switch_to(a)
    assert tuple(engine.steps) == a
    assert engine.branches.alternatives(a) == [b]


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


def test_a_new_prompt_starts_without_branches(engine):
    list(engine.run(3))
    engine.undo()
    assert engine.branches.paths
    engine.reset("蒙牛 ")
    assert engine.branches.paths == []


def test_returning_to_a_whole_branch_resumes_its_sampling(tiny_loaded, engine):
    """Seeded sampling continues on a restored branch exactly as if it had never been
    left: the sampler's state travels with the branch."""
    straight = Engine.from_loaded(tiny_loaded, SamplingSettings(temperature=1.0, seed=7))
    straight.reset("农夫山泉 ")
    expected = [s.chosen.id for s in straight.run(9)]

    list(engine.run(6))
    left = tuple(engine.steps)
    engine.undo(), engine.undo()
    engine.step(left[4].candidates[-1].id)
    list(engine.run(3))  # this path consumed random numbers of its own
    engine.switch_to(left)
    assert [s.chosen.id for s in engine.run(3)] == expected[6:]


def test_a_long_rewind_keeps_the_path_once(engine, monkeypatch):
    """Rewinding n steps copies and compares the path once, not n times."""
    list(engine.run(30))
    kept = []
    real = engine.branches.keep
    monkeypatch.setattr(engine.branches, "keep", lambda path, state=None: kept.append(path)
                        or real(path, state))
    for _ in range(25):
        engine.undo()
    assert len(kept) == 1 and len(kept[0]) == 30
    engine.step()
    engine.undo()  # a new step made a path not kept yet
    assert len(kept) == 2 and len(engine.branches.paths) == 2


def test_a_branch_of_a_space_and_byte_pieces_shows_what_it_adds(tiny_loaded):
    """The hands-on pass: a branch that adds ' ' plus byte pieces showed no text in the
    tree, and its export read like its parent. Both now show the pieces it adds."""
    from minigpt.host.session import branch_records, export_markdown
    from tui.branches import label

    e = Engine.from_loaded(tiny_loaded, SamplingSettings(temperature=0))
    e.reset("农夫山泉")
    current = tuple(e.step(i) for i in (41766, 102, 61994))  # ' 天', '然': ' 天然'
    e.undo(), e.undo(), e.undo()
    branch = tuple(e.step(i) for i in (9085, 240))  # b' \xe8', b'\x92': a space, pieces
    assert path_text(branch) == " "  # the characters it completes: nothing to see
    text = label(branch, 0, False).plain
    assert text.startswith("' ‹e8 92›'  Σ log p"), text
    [record] = branch_records(current, [branch])
    assert record["adds"] == " ‹e8 92›" and record["diverges_at_step"] == 1
    markdown = export_markdown([{"prompt": "农夫山泉", "steps": [], "branches": [record],
                                 "settings": {}, "model": "m", "turn": "t"}])
    assert "(from there: `' ‹e8 92›'`)" in markdown
