"""Sampling semantics on hand-made logits."""

import math

import pytest
import torch

from minigpt.engine import sampling


def test_temperature_scales_logits_and_zero_means_greedy():
    logits = torch.tensor([1.0, 2.0, 4.0])
    assert torch.equal(sampling.scale_temperature(logits, 2.0), torch.tensor([0.5, 1.0, 2.0]))
    assert sampling.scale_temperature(logits, 0) is logits
    probs, keep = sampling.distribution(logits, 0, None, None)
    assert torch.allclose(probs.double(), torch.softmax(logits.double(), -1), atol=1e-7)
    assert int(sampling.choose(probs, greedy=True, generator=None)) == 2


def test_lower_temperature_sharpens():
    logits = torch.tensor([1.0, 2.0, 3.0])
    cold, _ = sampling.distribution(logits, 0.5, None, None)
    hot, _ = sampling.distribution(logits, 2.0, None, None)
    assert cold[2] > torch.softmax(logits, -1)[2] > hot[2]


def test_top_k_keeps_ties_like_the_book():
    logits = torch.tensor([3.0, 1.0, 3.0, 2.0, 3.0])
    assert sampling.top_k_mask(logits, 2).tolist() == [True, False, True, False, True]
    assert sampling.top_k_mask(logits, 4).tolist() == [True, False, True, True, True]
    assert sampling.top_k_mask(logits, 10) is None


def test_top_p_keeps_smallest_set_reaching_p():
    probs = torch.tensor([0.1, 0.5, 0.3, 0.1])
    assert sampling.top_p_mask(probs, 0.5).tolist() == [False, True, False, False]
    assert sampling.top_p_mask(probs, 0.6).tolist() == [False, True, True, False]
    assert sampling.top_p_mask(probs, 0.85).tolist() == [True, True, True, False] or \
        sampling.top_p_mask(probs, 0.85).tolist() == [False, True, True, True]
    assert sampling.top_p_mask(probs, 1.0) is None


def test_top_p_applies_after_top_k():
    logits = torch.log(torch.tensor([0.4, 0.3, 0.2, 0.1]))
    probs, keep = sampling.distribution(logits, 1.0, 2, 0.5)
    # top-k leaves 0.4/0.3 -> renormalised 0.571/0.429; top-p 0.5 keeps the first only
    assert keep.tolist() == [True, False, False, False]
    assert probs.tolist() == pytest.approx([0.4, 0.3, 0.2, 0.1], abs=1e-6)  # reported: unfiltered


def test_filtered_probs_renormalise():
    probs = torch.tensor([0.5, 0.25, 0.25])
    out = sampling.filtered_probs(probs, torch.tensor([True, True, False]))
    assert out.tolist() == pytest.approx([2 / 3, 1 / 3, 0.0])


def test_repetition_penalty_divides_positive_and_multiplies_negative():
    logits = torch.tensor([2.0, -1.0, 3.0, 0.5])
    out = sampling.apply_repetition_penalty(logits, torch.tensor([0, 1, 1]), 2.0)
    assert out.tolist() == [1.0, -2.0, 3.0, 0.5]
    assert logits.tolist() == [2.0, -1.0, 3.0, 0.5]  # pure: input untouched
    assert sampling.apply_repetition_penalty(logits, torch.tensor([0]), 1.0) is logits


def test_seeded_sampling_is_reproducible_and_follows_probs():
    probs = torch.tensor([0.7, 0.2, 0.1])
    draws = lambda seed: [int(sampling.choose(probs, False, torch.Generator().manual_seed(seed + i)))
                          for i in range(2000)]
    a = draws(5)
    assert a == draws(5)
    assert math.isclose(a.count(0) / 2000, 0.7, abs_tol=0.04)
    assert a.count(2) > 0


def test_a_vanishing_top_p_keeps_the_top_token():
    """top_p 5e-324 underflows to 0 in float32; the top token must stay anyway."""
    probs = torch.softmax(torch.tensor([1.0, 3.0, 2.0]), -1)
    keep = sampling.top_p_mask(probs, 5e-324)
    assert keep.tolist() == [False, True, False]
    kept = sampling.filtered_probs(probs, keep)
    assert int(sampling.choose(kept, greedy=False, generator=torch.Generator())) == 1


def test_probabilities_are_exact_where_float32_softmax_drifts():
    """A wide row like the one where a float32 softmax summed to 1.00014: the reported
    distribution sums to 1 within 1e-6 and each value is exp(logit − logsumexp)."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(100_256, generator=g) * 4
    logits[:3] = torch.tensor([9.0, 8.9999, 8.9998])
    probs, _ = sampling.distribution(logits, 0.7, None, None)
    assert abs(float(probs.sum()) - 1) < 1e-6
    scaled = logits.double() / 0.7
    exact = torch.exp(scaled - torch.logsumexp(scaled, -1))
    assert torch.allclose(probs.double(), exact, atol=1e-7, rtol=0)


def test_sampling_draws_in_proportion_and_never_a_zero():
    probs = torch.tensor([0.5, 0.0, 0.3, 0.2, 0.0])
    g = torch.Generator().manual_seed(1)
    counts = torch.bincount(torch.stack([sampling.choose(probs, False, g)
                                         for _ in range(20_000)]), minlength=5)
    freq = (counts / counts.sum()).tolist()
    assert counts[1] == 0 and counts[4] == 0
    assert all(abs(f - p) < 0.015 for f, p in zip(freq, probs.tolist()))
    again = torch.Generator().manual_seed(1)  # seeded: the same draws again
    assert int(sampling.choose(probs, False, again)) == int(
        sampling.choose(probs, False, torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("size", [100_277, 50_304, 300, 5])
def test_two_stage_top_n_finds_what_topk_finds(size):
    z = torch.randn(size, generator=torch.Generator().manual_seed(size))
    values, ids = sampling.top_n(z, 5)
    expected = torch.topk(z, min(5, size))
    assert ids.tolist() == expected.indices.tolist()
    assert torch.equal(values, expected.values)


def test_greedy_rows_are_what_the_long_way_reads():
    """The graphed greedy tail: top-5 of exact_softmax, the argmax, all kept."""
    z = torch.randn(100_277, generator=torch.Generator().manual_seed(1)) * 4
    ids, probs, kept = sampling.greedy_rows(z, 5).tolist()
    full = sampling.exact_softmax(z)
    top = torch.topk(full, 5)
    assert ids[:5] == top.indices.tolist() and ids[5] == z.argmax().item()
    assert max(abs(a - b) for a, b in zip(probs, full[ids].tolist())) < 1e-9
    assert kept == [1.0] * 6


def test_greedy_rows_choose_the_lowest_id_among_tied_maxima():
    z = torch.randn(100_277, generator=torch.Generator().manual_seed(2))
    z[[70_000, 7, 99_999]] = z.max() + 1
    ids, probs, _ = sampling.greedy_rows(z, 5).tolist()
    assert ids[5] == 7 == z.argmax().item() and set(ids[:3]) == {7, 70_000, 99_999}
    assert probs[0] != probs[4]  # fewer than 5 tied: the answer is exact as it is
    flat = sampling.greedy_rows(torch.zeros(100_277), 5).tolist()
    assert flat[1][0] == flat[1][4]  # 5 or more tied: the caller must take the long way
