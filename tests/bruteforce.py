"""An independent brute-force model of tokensampler's sampling semantics.

Written from the specification only; it does NOT import tokensampler (nor
torch). Everything is per token and per output in plain Python:

* Philox4x32-10 on Python integers (one call per token, no vectorisation);
* parameters rounded to float32 with numpy (``f32``) before use;
* weights in Python float64 (``math.exp``), the token order with
  ``sorted(range(V), key=...)``;
* top-p masses in EXACT rational arithmetic (``fractions.Fraction`` of the
  float64 weights and of the float32 ``top_p``). For dyadic inputs (the
  property tests' weights k/64 * 2**e) every float64 prefix sum is exact too,
  so any correct float64 implementation must agree bit for bit. For
  non-dyadic inputs (softmax weights, arbitrary floats) ``top_p_ambiguous``
  reports the rows where float64 rounding could legitimately flip a top-p
  decision;
* the two-stage exponential race with ``math.log`` / ``math.log1p``: rows
  longer than 4096 tokens first race their chunks of 4096 by kept mass
  (``math.fsum``), then the tokens of the winning chunk; top-p alone by
  adaptive rejection (rounds of draws from the whole row, then from the
  tokens before the round's earliest draw).

Conventions: a "row" is a list of Python floats (the input's exact values,
already widened from float32/float16/bfloat16). Parameters are raw user
values for ONE output (``None`` = not given); this module applies the float32
rounding and the "disabled" rules itself.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

MASK32 = 0xFFFFFFFF
PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85

INF = math.inf
NAN = math.nan


# --------------------------------------------------------------------------
# Random numbers
# --------------------------------------------------------------------------

def philox4x32_10(counter, key, rounds=10):
    """Textbook Philox4x32-R (Salmon et al. 2011) on Python ints.

    ``counter`` is 4 uint32 words, ``key`` 2 uint32 words; returns 4 words.
    """
    c0, c1, c2, c3 = (int(c) & MASK32 for c in counter)
    k0, k1 = (int(k) & MASK32 for k in key)
    for r in range(rounds):
        if r:  # key schedule: bump between rounds
            k0 = (k0 + PHILOX_W0) & MASK32
            k1 = (k1 + PHILOX_W1) & MASK32
        p0 = PHILOX_M0 * c0
        p1 = PHILOX_M1 * c2
        hi0, lo0 = p0 >> 32, p0 & MASK32
        hi1, lo1 = p1 >> 32, p1 & MASK32
        c0, c1, c2, c3 = (hi1 ^ c1 ^ k0) & MASK32, lo1, (hi0 ^ c3 ^ k1) & MASK32, lo0
    return c0, c1, c2, c3


def token_bits(seed: int, offset: int, stream: int, token: int, draw: int = 0) -> int:
    """The 32 random bits of one (output, token) pair of draw ``draw``.

    ``seed`` / ``offset`` are Python ints read as 64-bit two's complement
    (negative values and values up to 2**64 - 1 both work).
    """
    key = (seed & MASK32, (seed >> 32) & MASK32)
    counter = (draw * 2**27 + token // 4, stream, offset & MASK32, (offset >> 32) & MASK32)
    return philox4x32_10(counter, key)[token % 4]


CHUNK = 4096


def chunk_bits(seed: int, offset: int, stream: int, chunk: int, draw: int = 0) -> int:
    """The 32 random bits of one (output, chunk) pair: the token layout at c0 + 2**31."""
    key = (seed & MASK32, (seed >> 32) & MASK32)
    counter = ((1 << 31) + draw * 2**27 + chunk // 4, stream, offset & MASK32,
               (offset >> 32) & MASK32)
    return philox4x32_10(counter, key)[chunk % 4]


def uniform(bits: int) -> float:
    return (bits + 0.5) / 2.0**32


def exponential(bits: int) -> float:
    """E = -log(U); log1p for U >= 1/2 where 1 - U is exact."""
    u = uniform(bits)
    if u < 0.5:
        return -math.log(u)
    return -math.log1p(u - 1.0)


# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------

def f32(x: float) -> float:
    """Round a Python float to the nearest float32 (numpy, independent of torch)."""
    with np.errstate(over="ignore"):
        return float(np.float32(x))


def norm_top_k(top_k, vocab):
    if top_k is None:
        return None
    k = int(top_k)
    return None if k <= 0 or k >= vocab else k


def norm_top_p(top_p):
    if top_p is None:
        return None
    p = f32(top_p)
    return None if p >= 1.0 else p


def norm_min_p(min_p):
    if min_p is None:
        return None
    m = f32(min_p)
    return None if m <= 0.0 else m


# --------------------------------------------------------------------------
# Weights, order, validity
# --------------------------------------------------------------------------

def brute_weights(row, from_logits, temperature=None):
    """``(w, valid, greedy, order)`` for one input row.

    ``order`` lists the token ids by exact weight descending, ties to the
    lower index. For logits the exact weights exp((x - max) / T) are strictly
    increasing in x, so the order is the logit order (float64 exp may
    underflow distinct logits to the same 0.0; the exact order does not).
    """
    row = [float(v) for v in row]
    V = len(row)
    if not from_logits:
        valid = all(not math.isnan(v) and not math.isinf(v) and not v < 0 for v in row)
        if valid:
            valid = math.fsum(row) > 0
        if not valid:
            return None, False, False, None
        w = list(row)
        order = sorted(range(V), key=lambda i: (-w[i], i))
        return w, True, False, order
    t = 1.0 if temperature is None else f32(temperature)
    valid = (all(not math.isnan(v) and v != INF for v in row)
             and any(v > -INF for v in row)
             and not math.isnan(t) and t >= 0 and not math.isinf(t))
    if not valid:
        return None, False, False, None
    m = max(row)
    greedy = t == 0.0
    if greedy:
        w = [1.0 if v == m else 0.0 for v in row]
    else:
        w = [math.exp((v - m) / t) for v in row]
    order = sorted(range(V), key=lambda i: (-row[i], i))
    return w, True, greedy, order


# --------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------

def _top_p_decisions(w, order, p, reference_set):
    """(token, exclusive prefix, threshold) for every token of ``reference_set``
    in ``order``; the token is kept by top-p iff prefix < threshold."""
    total = sum((Fraction(w[i]) for i in reference_set), Fraction(0))
    threshold = Fraction(p) * total
    out = []
    prefix = Fraction(0)
    for i in order:
        if i not in reference_set:
            continue
        out.append((i, prefix, threshold))
        prefix += Fraction(w[i])
    return out


def _sets(w, order, top_k, top_p, joint):
    V = len(w)
    k = norm_top_k(top_k, V)
    p = norm_top_p(top_p)
    topk_set = set(order) if k is None else set(order[:k])
    ref = set(range(V)) if joint else topk_set
    return k, p, topk_set, ref


def brute_keep_mask(w, order, top_k=None, top_p=None, min_p=None, joint=False):
    """Kept tokens (list of bool) straight from the spec."""
    V = len(w)
    k, p, topk_set, ref = _sets(w, order, top_k, top_p, joint)
    keep = [i in topk_set for i in range(V)]
    if p is not None:
        keep_p = [False] * V
        for i, prefix, threshold in _top_p_decisions(w, order, p, ref):
            keep_p[i] = prefix < threshold
        keep = [a and b for a, b in zip(keep, keep_p)]
    m = norm_min_p(min_p)
    if m is not None:
        wmax = max(w)
        keep = [keep[i] and Fraction(w[i]) >= Fraction(m) * Fraction(wmax) for i in range(V)]
    keep[order[0]] = True  # at least one token: the first of the order
    return keep


def top_p_ambiguous(w, order, top_k=None, top_p=None, joint=False, rel=1e-12):
    """True when float64 rounding could legitimately flip a top-p decision of
    this row: some exclusive prefix is within ``rel`` (relative) of the
    threshold AND not every mass involved (each prefix, the total, the
    threshold) is exactly representable in float64. Always False for dyadic
    rows, whose float64 masses are exact."""
    if w is None:
        return False
    k, p, topk_set, ref = _sets(w, order, top_k, top_p, joint)
    if p is None:
        return False
    decisions = _top_p_decisions(w, order, p, ref)
    if not decisions:
        return False
    threshold = decisions[0][2]
    total = sum((Fraction(w[i]) for i in ref), Fraction(0))
    masses = [prefix for _, prefix, _ in decisions] + [total, threshold]
    if all(Fraction(float(x)) == x for x in masses):
        return False
    return any(abs(prefix - threshold) <= Fraction(rel) * threshold
               for _, prefix, _ in decisions)


# --------------------------------------------------------------------------
# Public brute-force operations
# --------------------------------------------------------------------------

def brute_sample(row, from_logits, top_k=None, top_p=None, min_p=None, temperature=None,
                 joint=False, seed=0, offset=0, stream=0):
    """``(token, valid)`` for one output drawing from ``row``."""
    w, valid, greedy, order = brute_weights(row, from_logits, temperature)
    if not valid:
        return 0, False
    if greedy:
        m = max(row)
        return min(i for i, v in enumerate(row) if v == m), True
    keep = brute_keep_mask(w, order, top_k, top_p, min_p, joint)
    k_on = top_k is not None and 0 < top_k < len(row)
    m_on = min_p is not None and f32(min_p) > 0
    if top_p is not None and not k_on and not m_on:
        return brute_rejection(w, keep, order, seed, offset, stream), True
    return two_stage(w, keep, seed, offset, stream, 0), True


def two_stage(w, allowed, seed, offset, stream, draw):
    """The two-stage race over the ``allowed`` tokens with draw ``draw``'s numbers:
    rows longer than 4096 tokens first race their chunks of 4096 by allowed
    mass (``math.fsum``), then the allowed tokens of the winning chunk race."""
    chunk, best_key = 0, None
    for c in range(0, (len(w) + CHUNK - 1) // CHUNK if len(w) > CHUNK else 0):
        mass = math.fsum(w[i] for i in range(c * CHUNK, min(len(w), (c + 1) * CHUNK))
                         if allowed[i])
        key = mass / exponential(chunk_bits(seed, offset, stream, c, draw))
        if best_key is None or key > best_key:
            chunk, best_key = c, key
    best, best_r = None, None
    for i in range(chunk * CHUNK, min(len(w), (chunk + 1) * CHUNK)):
        if not allowed[i]:
            continue
        r = w[i] / exponential(token_bits(seed, offset, stream, i, draw))
        if best is None or r > best_r:  # strict: ties go to the lower index
            best, best_r = i, r
    return best


ROUNDS, DRAWS = 3, 4


def brute_rejection(w, keep, order, seed, offset, stream):
    """Top-p alone: rounds of DRAWS draws from a set holding every kept token;
    the first kept draw wins; a round with none shrinks the set to the tokens
    before its earliest draw in the order; after ROUNDS rounds, the race over
    the kept tokens (draw ROUNDS * DRAWS)."""
    rank = {t: pos for pos, t in enumerate(order)}
    allowed = [True] * len(w)
    for k in range(ROUNDS):
        drawn = [two_stage(w, allowed, seed, offset, stream, k * DRAWS + r) for r in range(DRAWS)]
        for d in drawn:
            if keep[d]:
                return d
        first = min(drawn, key=lambda t: rank[t])
        allowed = [rank[i] < rank[first] for i in range(len(w))]
    return two_stage(w, keep, seed, offset, stream, ROUNDS * DRAWS)


def brute_renorm(row, top_k=None, top_p=None):
    """top-k / top-p renormalised probabilities (float64 list); all NaN if invalid."""
    w, valid, _, order = brute_weights(row, from_logits=False)
    if not valid:
        return [NAN] * len(row)
    keep = brute_keep_mask(w, order, top_k, top_p)
    s = math.fsum(w[i] for i in range(len(w)) if keep[i])
    return [w[i] / s if keep[i] else 0.0 for i in range(len(w))]


def brute_mask_logits(row, top_k=None):
    """Logits outside the top k set to -inf; all NaN if invalid."""
    w, valid, _, order = brute_weights(row, from_logits=True)
    if not valid:
        return [NAN] * len(row)
    keep = brute_keep_mask(w, order, top_k)
    return [float(row[i]) if keep[i] else -INF for i in range(len(row))]


def brute_softmax(row, temperature=None):
    """softmax(row / T) in float64 (T = 0: uniform over the maxima); all NaN if invalid."""
    w, valid, _, _ = brute_weights(row, from_logits=True, temperature=temperature)
    if not valid:
        return [NAN] * len(row)
    s = math.fsum(w)
    return [x / s for x in w]


def brute_distribution(row, from_logits, top_k=None, top_p=None, min_p=None,
                       temperature=None, joint=False):
    """Exact draw probabilities of the kept tokens (float64 list) — the target of
    the frequency tests. Greedy rows put all mass on the argmax."""
    w, valid, greedy, order = brute_weights(row, from_logits, temperature)
    if not valid:
        raise ValueError("invalid row")
    if greedy:
        m = max(row)
        i = min(i for i, v in enumerate(row) if v == m)
        return [1.0 if j == i else 0.0 for j in range(len(row))]
    keep = brute_keep_mask(w, order, top_k, top_p, min_p, joint)
    s = math.fsum(w[i] for i in range(len(w)) if keep[i])
    return [w[i] / s if keep[i] else 0.0 for i in range(len(w))]
