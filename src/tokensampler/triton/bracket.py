"""Top-p alone: narrowing the bracket around the threshold by histograms.

``plan_row`` (chunked.py) opens a bracket of order keys ``[L, kmax]``
that holds the top-p threshold. Each pass here narrows it until it holds at
most CAP tokens, which ``compact_kernel`` then gathers for one sort:

* ``hist_kernel`` (grid: outputs x chunks, one read of each chunk that
  reaches the bracket): counts the bracket's tokens into NB bins of equal
  width on ``_coord``'s axis, and sums the mass above the bracket exactly.
* ``narrow_row`` (run by the last of a row's programs to finish the pass,
  O(NB) work): bounds each bin's mass by its count times the weights at its
  edges, and keeps the bins where the prefix mass can cross the target.

At most HIST_PASSES (triton/__init__.py) launches; every loop is over a
constant (bins, chunks). The bounds only steer: ``select_row`` checks
that the prefix ends inside the final bracket, on either side, and sends the
row to the exact single-program path when it does not.
"""

import triton
import triton.language as tl

from . import row
from .chunked import (NI, _SIZES, _chunk_scale, _local_weight, _to_row_scale, arrive,
                      combine_stats, request)


@triton.jit
def _coord(key, FROM_LOGITS: tl.constexpr):
    """Where a key sits on the histogram's axis: the logit itself (bins of
    equal logit width), or for probs the key as a float (the bit pattern is a
    piecewise-linear log2 of p). Both are monotone in the key."""
    if FROM_LOGITS:
        return row.key_value(key, True)
    else:
        return key.to(tl.float32)


@triton.jit
def _bin_scale(lo, hi, FROM_LOGITS: tl.constexpr, NB: tl.constexpr):
    """(origin, bins per unit) that spread keys [lo, hi] over NB bins. A
    degenerate span puts every key in bin 0 (no progress; passes are bounded)."""
    u0 = _coord(lo, FROM_LOGITS)
    span = _coord(hi, FROM_LOGITS) - u0
    s = tl.where((span > 0.0) & (span < float("inf")), NB / span, 0.0)
    return u0, tl.where(s < float("inf"), s, 0.0)


@triton.jit
def _bin(key, u0, s, FROM_LOGITS: tl.constexpr, NB: tl.constexpr):
    """Bin of each key: ``floor((coord - u0) * s)`` clamped to [0, NB). Monotone
    in the key (IEEE subtraction and multiplication by s >= 0 are)."""
    x = (_coord(key, FROM_LOGITS) - u0) * s
    x = tl.minimum(tl.maximum(tl.where(x == x, x, 0.0), 0.0), NB - 1.0)
    return x.to(tl.int32)


@triton.jit
def _edge(b, u0, s, lo, hi, UP: tl.constexpr, FROM_LOGITS: tl.constexpr):
    """A key on the safe side of the edge where bin ``b`` starts: with UP, a
    key at or above every key of bins below b; without, a key at or below
    every key of bins b and up. The margin covers float rounding in ``_bin``.
    """
    bf = b.to(tl.float32)
    e = u0 + bf / tl.where(s > 0.0, s, 1.0)
    if FROM_LOGITS:
        m = (tl.abs(e) + tl.abs(u0)) * 1e-6 + 1e-30
        k = row.order_key(e + m if UP else e - m, True)
    else:
        m = e * 1e-6 + 4.0
        e = tl.minimum(tl.maximum(e + m if UP else e - m, 0.0), 2139095040.0)   # key of +inf
        k = e.to(tl.int32)
    k = tl.minimum(tl.maximum(k, lo), hi)
    # No usable scale: every key is in bin 0, so edges above it are hi (UP)
    # or lo; bin 0 always starts at lo.
    k = tl.where(s > 0.0, k, hi if UP else lo)
    return tl.where(bf > 0.0, k, lo)


@triton.jit
def _mass_above(ab_ptr, pf_ptr, at, j, C, ref, mul, inv_t, FROM_LOGITS: tl.constexpr,
                CP2: tl.constexpr):
    """Row-scale sum of the per-chunk masses (chunk scale) stored at ``ab[at * C + c]``."""
    cc = tl.arange(0, CP2)
    m = cc < C
    b = (j * C + cc).to(tl.int64)
    part = tl.load(ab_ptr + at * C + cc, mask=m, other=0.0)
    return tl.sum(part * _to_row_scale(pf_ptr, b, m, ref, mul, inv_t, FROM_LOGITS))


@triton.jit
def _narrow(st_ptr, h_ptr, ab_ptr, pf_ptr, slot, j, C, p, total, ref, mul, inv_t,
            FROM_LOGITS: tl.constexpr, NS: tl.constexpr, NB: tl.constexpr,
            CAP: tl.constexpr, CP2: tl.constexpr):
    """Row j's bracket ``(lo, hi, n_in)`` after histogram pass ``slot``.

    The pass counted the tokens of the bracket in state slot ``slot`` into NB
    bins (``h``) and summed the mass above its ``hi`` exactly (``ab``). A
    bin's mass lies between its count times the weights at its two edges, so
    suffix sums bound the mass at or above each edge; the new bracket runs
    from the highest edge whose lower bound still reaches the target to the
    lowest edge whose upper bound falls short of it. The bounds only steer:
    ``select_kernel`` checks that the prefix ends inside the final bracket and
    takes the long path if it ever does not. Brackets that already fit are
    returned unchanged.
    """
    at = (j * NS + slot).to(tl.int64)
    lo = tl.load(st_ptr + at * 4)
    hi = tl.load(st_ptr + at * 4 + 1)
    n_in = tl.load(st_ptr + at * 4 + 2)
    if (lo < hi) & (n_in > CAP):
        a = _mass_above(ab_ptr, pf_ptr, at, j, C, ref, mul, inv_t, FROM_LOGITS, CP2)
        u0, s = _bin_scale(lo, hi, FROM_LOGITS, NB)
        b = tl.arange(0, NB)
        cnt = tl.load(h_ptr + at * NB + b)
        down = _edge(b, u0, s, lo, hi, False, FROM_LOGITS)     # <= keys of bins >= b
        up = _edge(b + 1, u0, s, lo, hi, True, FROM_LOGITS)    # >= keys of bins <= b
        one = tl.full([NB], True, tl.int1)
        w_min = row.weight(row.key_value(down, FROM_LOGITS), one, ref, mul, FROM_LOGITS)
        w_max = row.weight(row.key_value(up, FROM_LOGITS), one, ref, mul, FROM_LOGITS)
        lower = tl.where(cnt > 0, cnt.to(tl.float32) * w_min, 0.0)
        upper = tl.where(cnt > 0, cnt.to(tl.float32) * w_max, 0.0)
        # Bounds on the mass at or above bin b's lower edge: suffix sums.
        lc = a + tl.sum(lower) - tl.cumsum(lower, axis=0) + lower
        uc = a + tl.sum(upper) - tl.cumsum(upper, axis=0) + upper
        # Margins absorb float32 rounding between these sums and select's.
        target = p * total
        b_lo = tl.max(tl.where(lc * (1.0 - 1e-5) >= target * (1.0 + 1e-5), b, 0))
        b_hi = tl.min(tl.where((uc * (1.0 + 1e-5) < target * (1.0 - 1e-5)) & (b > b_lo), b, NB))
        new_lo = tl.sum(tl.where(b == b_lo, down, 0))
        up_lo = _edge(b, u0, s, lo, hi, True, FROM_LOGITS)       # >= keys of bins < b
        new_hi = tl.where(b_hi >= NB, hi, tl.sum(tl.where(b == b_hi, up_lo, 0)))
        new_hi = tl.maximum(new_hi, new_lo)
        # Every key in [new_lo, new_hi] falls in the bins of its two ends
        # (_bin is monotone): their counts bound the new bracket's.
        b0 = _bin(new_lo, u0, s, FROM_LOGITS, NB)
        b1 = _bin(new_hi, u0, s, FROM_LOGITS, NB)
        n_in = tl.sum(tl.where((b >= b0) & (b <= b1), cnt, 0))
        # The bins go back to zero for the next call (zero at rest,
        # workspace.py), as ``arrive`` resets its counters: after every use
        # of ``cnt`` and a barrier, since a bin may sit in two threads' lanes
        # (NB below the program's lanes) and only one of them stores: a
        # store scheduled before another thread's load would hand it a zero
        # (independent review, thirteenth session: gfx942 code for 8 warps).
        tl.debug_barrier()
        tl.store(h_ptr + at * NB + b, tl.zeros([NB], tl.int32))
        lo = new_lo
        hi = new_hi
    return lo, hi, n_in


@triton.jit
def _row_target(j, idx_ptr, B, stride_row, p_ptr, p_val, t_ptr, t_val, pi_ptr, pf_ptr, C,
                HAS_INDICES: tl.constexpr, FROM_LOGITS: tl.constexpr, P_ROW: tl.constexpr,
                T_ROW: tl.constexpr, CP2: tl.constexpr):
    """(row_off, p, total, ref, mul, inv_t) for the bracket passes."""
    ok, row_off, _k, p, _m, greedy, inv_t = request(
        j, idx_ptr, B, stride_row, p_ptr, 0, p_ptr, p_val, p_ptr, 0.0, t_ptr, t_val,
        HAS_INDICES, False, False, True, P_ROW, False, False, FROM_LOGITS, T_ROW)
    bad, kmax, kmin, amax, n_pos, n_max, vmax, ref, mul, total = combine_stats(
        pi_ptr, pf_ptr, j, C, inv_t, FROM_LOGITS, CP2)
    return row_off, p, total, ref, mul, inv_t


@triton.jit(do_not_specialize=_SIZES + ["k"])
def hist_kernel(x_ptr, stride_row, V, B, C, idx_ptr, p_ptr, p_val, t_ptr, t_val, pi_ptr, pf_ptr,
                plan_ptr, st_ptr, h_ptr, ab_ptr, arrived_ptr, k, HAS_INDICES: tl.constexpr,
                FROM_LOGITS: tl.constexpr, P_ROW: tl.constexpr, T_ROW: tl.constexpr,
                CHUNK: tl.constexpr, CP2: tl.constexpr, CAP: tl.constexpr, NS: tl.constexpr,
                NB: tl.constexpr, NARROW: tl.constexpr):
    """Histogram pass ``k`` over chunk (j, c) of a top-p bracket.

    Pass k counts the bracket in state slot k (``plan_row`` fills the slots,
    ``narrow_row`` the later ones from this pass's results). In one read
    of the chunk: the tokens inside the bracket are
    counted into NB bins of equal width on the ``_coord`` axis
    (``tl.histogram``, then one atomic add per non-empty bin into the row's
    counts: integers, so the order does not matter), and the mass of the
    tokens above the bracket is summed exactly (chunk scale). Rows whose
    bracket already fits, and chunks whose largest key is below it, are not
    read. With NARROW the row's last program to finish narrows the bracket
    (``narrow_row``, O(NB) work); without, ``narrow_kernel`` does.
    """
    j = tl.program_id(0)
    c = tl.program_id(1)
    at = (j * NS + k).to(tl.int64)
    lo = tl.load(st_ptr + at * 4)
    hi = tl.load(st_ptr + at * 4 + 1)
    n_in = tl.load(st_ptr + at * 4 + 2)
    if (lo < hi) & (n_in > CAP):
        base = (j * C + c).to(tl.int64)
        above = tl.zeros([], tl.float32)
        if tl.load(pi_ptr + base * NI + 1) >= lo:
            ok, row_off, _k, _p, _m, greedy, inv_t = request(
                j, idx_ptr, B, stride_row, t_ptr, 0, t_ptr, 1.0, t_ptr, 0.0, t_ptr, t_val,
                HAS_INDICES, False, False, False, False, False, False, FROM_LOGITS, T_ROW)
            cols = c * CHUNK + tl.arange(0, CHUNK)
            v, inb = row.load(x_ptr, row_off, cols, V, FROM_LOGITS)
            key = row.order_key(v, FROM_LOGITS)
            pos = row.positive(v, inb, FROM_LOGITS)
            inside = pos & (key >= lo) & (key <= hi)
            u0, s = _bin_scale(lo, hi, FROM_LOGITS, NB)
            h = tl.histogram(_bin(key, u0, s, FROM_LOGITS, NB), NB, mask=inside)
            # Relaxed: only the sum matters, and ``arrive`` (or the launch
            # boundary) orders the bins before anyone reads them. The default
            # acq_rel costs a fence and an L1 flush per atomic (sm_90 SASS).
            tl.atomic_add(h_ptr + at * NB + tl.arange(0, NB), h, mask=h > 0, sem="relaxed")
            if k > 0:   # pass 0's bracket reaches the row's largest key
                shift, factor = _chunk_scale(pf_ptr, base, inv_t, FROM_LOGITS)
                above = tl.sum(_local_weight(v, pos & (key > hi), shift, factor, inv_t,
                                             FROM_LOGITS))
        tl.store(ab_ptr + at * C + c, above)
        if NARROW:
            if arrive(arrived_ptr + at, C):
                narrow_row(j, k, pi_ptr, pf_ptr, plan_ptr, st_ptr, h_ptr, ab_ptr, C, B, idx_ptr,
                           stride_row, p_ptr, p_val, t_ptr, t_val, HAS_INDICES, FROM_LOGITS,
                           P_ROW, T_ROW, CP2, CAP, NS, NB)


@triton.jit(do_not_specialize=_SIZES + ["k"])
def narrow_kernel(pi_ptr, pf_ptr, plan_ptr, st_ptr, h_ptr, ab_ptr, k, C, B, idx_ptr, stride_row,
                  p_ptr, p_val, t_ptr, t_val, HAS_INDICES: tl.constexpr,
                  FROM_LOGITS: tl.constexpr, P_ROW: tl.constexpr, T_ROW: tl.constexpr,
                  CP2: tl.constexpr, CAP: tl.constexpr, NS: tl.constexpr, NB: tl.constexpr):
    """``narrow_row`` as a launch of its own (one program per output), for
    the rows pass ``k`` counted."""
    j = tl.program_id(0)
    at = (j * NS + k).to(tl.int64) * 4
    if (tl.load(st_ptr + at) < tl.load(st_ptr + at + 1)) & (tl.load(st_ptr + at + 2) > CAP):
        narrow_row(j, k, pi_ptr, pf_ptr, plan_ptr, st_ptr, h_ptr, ab_ptr, C, B, idx_ptr,
                   stride_row, p_ptr, p_val, t_ptr, t_val, HAS_INDICES, FROM_LOGITS, P_ROW,
                   T_ROW, CP2, CAP, NS, NB)


@triton.jit
def narrow_row(j, k, pi_ptr, pf_ptr, plan_ptr, st_ptr, h_ptr, ab_ptr, C, B, idx_ptr, stride_row,
               p_ptr, p_val, t_ptr, t_val, HAS_INDICES: tl.constexpr, FROM_LOGITS: tl.constexpr,
               P_ROW: tl.constexpr, T_ROW: tl.constexpr, CP2: tl.constexpr, CAP: tl.constexpr,
               NS: tl.constexpr, NB: tl.constexpr):
    """Row j's bracket after histogram pass ``k`` (``_narrow``), run by the
    last of the pass's programs of the row. Every later state slot gets it
    (a bracket that now fits makes the later passes skip the row), and the
    plan too once the row is done: it fits, or this was the last pass."""
    row_off, p, total, ref, mul, inv_t = _row_target(
        j, idx_ptr, B, stride_row, p_ptr, p_val, t_ptr, t_val, pi_ptr, pf_ptr, C,
        HAS_INDICES, FROM_LOGITS, P_ROW, T_ROW, CP2)
    lo, hi, n_in = _narrow(st_ptr, h_ptr, ab_ptr, pf_ptr, k, j, C, p, total, ref, mul, inv_t,
                           FROM_LOGITS, NS, NB, CAP, CP2)
    for q in tl.static_range(1, NS):
        if q > k:
            at = (j * NS + q).to(tl.int64) * 4
            tl.store(st_ptr + at, lo)
            tl.store(st_ptr + at + 1, hi)
            tl.store(st_ptr + at + 2, n_in)
    if ~((lo < hi) & (n_in > CAP)) | (k == NS - 1):
        tl.store(plan_ptr + j * 4, lo)
        tl.store(plan_ptr + j * 4 + 1, hi)
