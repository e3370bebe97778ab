"""Statistical tests of the reference backend: do draws follow the kept distribution?

Each test draws N = 200_000 independent outputs of one row (``indices`` all 0,
so every output gets its own random numbers), counts the tokens, and checks

* zero draws outside the kept set (exact: the exponential race never picks a
  dropped token), and
* a chi-square goodness-of-fit test against the exact kept distribution (the
  renormalised kept weights, computed by tests/bruteforce.py, independently of
  tokensampler), rejecting at ALPHA = 1e-4 per test.

Bins whose expected count is below 5 are pooled into one bin. The p-value is
the chi-square survival function computed as the regularised upper incomplete
gamma function, ``torch.special.gammaincc(df / 2, stat / 2)`` (scipy is not a
dependency); ``test_chi_square_pvalue_is_calibrated`` pins it to textbook
quantiles.

Seeds are fixed, so the tests are deterministic; the false-alarm probability
of a correct sampler is ALPHA per test (about 2e-3 for the whole file), taken
once when a seed is chosen. ``test_chi_square_rejects_wrong_distribution``
shows the same machinery has power: a 10% error in one token's probability,
or ignoring the filter, is rejected with p-values far below ALPHA.
"""

from __future__ import annotations

import math

import pytest
import torch

import bruteforce as bf
from helpers import one_thread  # noqa: F401  (autouse fixture)
import tokensampler as ts

ALPHA = 1e-4
N = 200_000




# --------------------------------------------------------------------------
# Machinery
# --------------------------------------------------------------------------

def chi2_sf(stat: float, df: int) -> float:
    """P(X >= stat) for X ~ chi-square(df): gammaincc(df/2, stat/2)."""
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64),
                                         torch.tensor(stat / 2, dtype=torch.float64)))


def chi_square(counts: list[int], probs: list[float]) -> tuple[float, int, float]:
    """(statistic, df, p-value) of ``counts`` against ``probs`` (bins with p = 0
    excluded; bins expecting < 5 draws pooled)."""
    n = sum(counts)
    bins, pool_o, pool_e = [], 0, 0.0
    for o, p in zip(counts, probs):
        if p == 0:
            continue
        e = n * p
        if e < 5:
            pool_o += o
            pool_e += e
        else:
            bins.append((o, e))
    if pool_e > 0:
        bins.append((pool_o, pool_e))
    stat = sum((o - e) ** 2 / e for o, e in bins)
    df = len(bins) - 1
    return stat, df, (1.0 if df == 0 else chi2_sf(stat, df))


def draw_counts(fn, x: torch.Tensor, *args, n: int = N, seed=20260101, **kw) -> list[int]:
    idx = torch.zeros(n, dtype=torch.int64)
    out = fn(x, *args, indices=idx, seed=seed, backend="reference", **kw)
    assert out.shape == (n,)
    return torch.bincount(out.to(torch.int64), minlength=x.shape[1]).tolist()


def assert_follows(counts: list[int], probs: list[float]):
    outside = {i: c for i, c in enumerate(counts) if probs[i] == 0 and c}
    assert not outside, f"draws outside the kept set: {outside}"
    stat, df, p = chi_square(counts, probs)
    assert p > ALPHA, f"chi-square {stat:.1f} on {df} df, p = {p:.3g} <= {ALPHA}"
    return p


def expected(x: torch.Tensor, from_logits: bool, **kw) -> list[float]:
    return bf.brute_distribution(x[0].to(torch.float64).tolist(), from_logits, **kw)


def weights_row(V: int, gen_seed: int, small=()) -> torch.Tensor:
    """A fixed unnormalised probs row (total != 1) with optional tiny tokens."""
    g = torch.Generator().manual_seed(gen_seed)
    w = torch.rand(V, generator=g, dtype=torch.float64) * 3 + 0.05
    for i, _ in small:
        w[i] = 0
    rest = 1.0 - sum(q for _, q in small)
    w = w / w.sum() * 1.7 * rest
    for i, q in small:  # token i gets probability q of the row total 1.7
        w[i] = q * 1.7
    return w.to(torch.float32).unsqueeze(0)


# --------------------------------------------------------------------------
# The machinery itself
# --------------------------------------------------------------------------

@pytest.mark.parametrize("df,quantile,p", [(1, 3.841458820694124, 0.05),
                                          (10, 18.307038053275146, 0.05),
                                          (30, 59.70306390318716, 0.001),
                                          (4, 1.0636232167792, 0.9)])
def test_chi_square_pvalue_is_calibrated(df, quantile, p):
    assert math.isclose(chi2_sf(quantile, df), p, rel_tol=1e-6)


def test_chi_square_rejects_wrong_distribution():
    """The test has power: the same draws, checked against slightly wrong
    distributions, are rejected (p far below ALPHA)."""
    x = weights_row(24, 3)
    kw = dict(top_p=0.8)
    counts = draw_counts(ts.top_p_sampling_from_probs, x, 0.8)
    right = expected(x, False, **kw)
    assert_follows(counts, right)
    # 1) the unfiltered distribution (forgetting top-p)
    unfiltered = expected(x, False)
    assert chi_square(counts, unfiltered)[2] < ALPHA
    # 2) the most likely kept token's probability changed by +10%, renormalised
    top = max(range(len(right)), key=lambda i: right[i])
    wrong = list(right)
    wrong[top] *= 1.10
    s = math.fsum(wrong)
    wrong = [q / s for q in wrong]
    assert chi_square(counts, wrong)[2] < ALPHA
    # 3) a mid-ranked kept token's probability changed by 10% (here q ~ 0.05)
    kept = sorted((i for i in range(len(right)) if right[i] > 0), key=lambda i: -right[i])
    mid = kept[len(kept) // 2]
    wrong = list(right)
    wrong[mid] *= 0.90
    s = math.fsum(wrong)
    wrong = [q / s for q in wrong]
    assert right[mid] > 0.03
    assert chi_square(counts, wrong)[2] < ALPHA


# --------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------

def test_sampling_from_probs_unnormalised_with_rare_tokens():
    """V = 50, total 1.7 (not 1), a token of probability 1e-3 (~200 expected
    draws) and one of 2e-5 (pooled); no filter."""
    x = weights_row(50, 1, small=[(7, 1e-3), (31, 2e-5)])
    probs = expected(x, False)
    assert abs(probs[7] - 1e-3) < 1e-6
    counts = draw_counts(ts.sampling_from_probs, x)
    assert_follows(counts, probs)
    # the rare token alone: binomial z-score (a 10% rate error would be z ~ 1.4;
    # this only guards against gross errors, the chi-square covers the rest)
    z = (counts[7] - N * probs[7]) / math.sqrt(N * probs[7] * (1 - probs[7]))
    assert abs(z) < 4.5


def test_sampling_from_probs_small_vocab():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 0.0, 0.5, 0.25, 5.0, 0.125, 0.125]])
    assert_follows(draw_counts(ts.sampling_from_probs, x), expected(x, False))


def test_two_stage_race_across_chunks():
    """V = 4096 + 64: two chunks of the race with kept masses 3/8 and 5/8, and
    one token with zero weight; 20k draws (each a full row of the reference)."""
    x = torch.zeros(1, 4096 + 64)
    for i, w in ((3, 1.0), (7, 2.0), (4100, 4.0), (4159, 1.0)):
        x[0, i] = w
    counts = draw_counts(ts.sampling_from_probs, x, n=20000)
    assert_follows(counts, expected(x, False))
    # min-p 0.26 drops tokens 3 and 4159 (below 0.26 * 4): masses 2 vs 4
    counts = draw_counts(ts.min_p_sampling_from_probs, x, 0.26, n=20000)
    assert_follows(counts, expected(x, False, min_p=0.26))


def test_top_k_sampling():
    x = weights_row(20, 2)
    counts = draw_counts(ts.top_k_sampling_from_probs, x, 5)
    probs = expected(x, False, top_k=5)
    assert sum(q > 0 for q in probs) == 5
    assert_follows(counts, probs)


def test_top_p_sampling():
    x = weights_row(30, 4)
    probs = expected(x, False, top_p=0.8)
    assert 3 < sum(q > 0 for q in probs) < 30
    assert_follows(draw_counts(ts.top_p_sampling_from_probs, x, 0.8), probs)


def test_min_p_sampling():
    x = weights_row(40, 5)
    probs = expected(x, False, min_p=0.4)
    assert 3 < sum(q > 0 for q in probs) < 40
    assert_follows(draw_counts(ts.min_p_sampling_from_probs, x, 0.4), probs)


@pytest.mark.parametrize("order", ["top_k_first", "joint"])
def test_top_k_top_p_sampling_from_probs(order):
    """k = 12, p = 0.6 on V = 24: the two filter orders keep different sets
    (asserted), and each is followed."""
    x = weights_row(24, 6)
    sets = {o: [q > 0 for q in expected(x, False, top_k=12, top_p=0.6, joint=o == "joint")]
            for o in ("top_k_first", "joint")}
    assert sets["top_k_first"] != sets["joint"]
    probs = expected(x, False, top_k=12, top_p=0.6, joint=order == "joint")
    counts = draw_counts(ts.top_k_top_p_sampling_from_probs, x, 12, 0.6,
                         filter_apply_order=order)
    assert_follows(counts, probs)


@pytest.mark.parametrize("order", ["top_k_first", "joint"])
def test_top_k_top_p_sampling_from_logits_with_temperature(order):
    """V = 32 logits, some -inf, T = 0.7, k = 15, p = 0.9."""
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(1, 32, generator=g) * 1.5
    logits[0, [3, 17]] = -math.inf
    kw = dict(top_k=15, top_p=0.9, temperature=0.7, joint=order == "joint")
    probs = expected(logits, True, **kw)
    assert 3 < sum(q > 0 for q in probs) < 15
    counts = draw_counts(ts.top_k_top_p_sampling_from_logits, logits, 15, 0.9,
                         filter_apply_order=order, temperature=0.7)
    assert_follows(counts, probs)


def test_sampling_from_logits_temperature_bfloat16():
    """bfloat16 logits, T = 1.5, no filter."""
    g = torch.Generator().manual_seed(8)
    logits = (torch.randn(1, 16, generator=g) * 3).to(torch.bfloat16)
    probs = expected(logits, True, temperature=1.5)
    counts = draw_counts(ts.sampling_from_logits, logits, temperature=1.5)
    assert_follows(counts, probs)


def test_greedy_is_deterministic_argmax():
    logits = torch.tensor([[0.5, 2.0, -1.0, 2.0, 1.9]])
    counts = draw_counts(ts.sampling_from_logits, logits, n=10_000, temperature=0.0)
    assert counts == [0, 10_000, 0, 0, 0]


# --------------------------------------------------------------------------
# Randomness layouts: consecutive seeds, consecutive offsets, streams
# --------------------------------------------------------------------------

def test_per_output_consecutive_seeds():
    """seed = arange(N) (stream 0 for every output): consecutive seeds act as
    independent draws."""
    x = weights_row(12, 9)
    counts = draw_counts(ts.top_k_sampling_from_probs, x, 8, seed=torch.arange(N))
    assert_follows(counts, expected(x, False, top_k=8))


def test_per_output_consecutive_offsets():
    """One seed value repeated per output (stream 0) and offset = arange(N):
    advancing the offset gives independent draws."""
    x = weights_row(12, 10)
    counts = draw_counts(ts.sampling_from_probs, x, seed=torch.full((N,), 12345),
                         offset=torch.arange(N) + 2**32 - N // 2)  # crosses the 32-bit word
    assert_follows(counts, expected(x, False))


def test_consecutive_outputs_are_independent():
    """Joint counts of (token of output 2i, token of output 2i+1) under one
    shared seed (streams 2i, 2i+1) match the product distribution."""
    x = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    idx = torch.zeros(N, dtype=torch.int64)
    out = ts.sampling_from_probs(x, indices=idx, seed=99, backend="reference").to(torch.int64)
    pairs = out[0::2] * 4 + out[1::2]
    counts = torch.bincount(pairs, minlength=16).tolist()
    q = expected(x, False)
    assert_follows(counts, [q[a] * q[b] for a in range(4) for b in range(4)])
