"""Kernels that split every row across programs (grid: outputs x chunks).

A row of V tokens is cut into ``C = cdiv(V, CHUNK)`` chunks; each program
reads one chunk once and writes a few numbers to a workspace; the next launch
combines them. Nothing waits on another program of the same launch.

Plain sampling (1 read of the row, 2 launches):
    ``stats_kernel(WITH_RACE)`` races inside each chunk with chunk-local
    scaling; ``final_kernel`` rescales the chunk winners and picks one.
min-p (2 reads, 3 launches):
    ``stats_kernel``, then ``race_kernel`` with the row's threshold, then
    ``final_kernel``.
top-k / top-p / both (2 reads plus a few thousand candidates, 4 launches):
    ``stats_kernel(WITH_GM)`` also stores each 32-token group's largest key;
    ``plan_kernel`` bisects over those group maxima for a key ``L`` that
    every kept token must reach (k groups reaching ``L`` hold at least k
    tokens; their maxima alone carry the top-p mass); ``compact_kernel``
    copies the tokens with key >= L into a per-row buffer (one atomic slot
    reservation per chunk, no waiting); ``select_kernel`` sorts them by the
    exact order, applies the rules of docs/semantics.md to that prefix and
    races the kept ones. A row whose candidates overflow the buffer, or whose
    top-p prefix might pass the last candidate (float rounding), takes the
    single-program path of kernels.py: bounded, slower.

Combining chunk partials costs each program ``C <= 64`` loads; bisection is
32 fixed steps over at most V/32 group maxima.
"""

import triton
import triton.language as tl

from . import rng as trng
from . import row
from .kernels import _min_p_floor, _param, race_key, sample_row, stream_of

NI: tl.constexpr = tl.constexpr(6)   # int32 partials per chunk
NF: tl.constexpr = tl.constexpr(3)   # float32 partials per chunk
INT_MIN: tl.constexpr = tl.constexpr(-2147483648)
INT_MAX: tl.constexpr = tl.constexpr(2147483647)
# Sizes change from call to call; specialising on them (== 1, divisible by 16)
# would compile a new variant for each batch and vocabulary.
_SIZES = ["V", "B", "C", "seed_step", "off_step"]


@triton.jit
def request(j, idx_ptr, B, stride_row, k_ptr, k_val, p_ptr, p_val, mp_ptr, mp_val, t_ptr, t_val,
            HAS_INDICES: tl.constexpr, HAS_K: tl.constexpr, K_ROW: tl.constexpr,
            HAS_P: tl.constexpr, P_ROW: tl.constexpr, HAS_MINP: tl.constexpr,
            MINP_ROW: tl.constexpr, FROM_LOGITS: tl.constexpr, T_ROW: tl.constexpr):
    """Output j's row offset and parameters, and whether they are usable.

    Out-of-range per-request values reach here only from accelerator tensors
    (params.py checks CPU ones): such a row is reported invalid, never used.
    """
    if HAS_INDICES:
        rid = tl.load(idx_ptr + j)
    else:
        rid = j.to(tl.int64)
    ok = (rid >= 0) & (rid < B)
    row_off = tl.where(ok, rid, 0).to(tl.int64) * stride_row
    k = _param(k_ptr, k_val, j, HAS_K, K_ROW, tl.int32)
    p = _param(p_ptr, p_val, j, HAS_P, P_ROW, tl.float32)
    mp = _param(mp_ptr, mp_val, j, HAS_MINP, MINP_ROW, tl.float32)
    temp = _param(t_ptr, t_val, j, FROM_LOGITS, T_ROW, tl.float32)
    ok &= ~((p != p) | (p < 0.0) | (p > 1.0) | (mp != mp) | (mp > 1.0))
    ok &= ~((temp != temp) | (temp < 0.0) | (temp == float("inf")))
    greedy = FROM_LOGITS & (temp == 0.0)
    inv_t = tl.math.div_rn(1.0, tl.where(temp > 0.0, temp, 1.0))
    return ok, row_off, k, p, mp, greedy, inv_t


@triton.jit
def combine_stats(pi_ptr, pf_ptr, j, C, inv_t, FROM_LOGITS: tl.constexpr, CP2: tl.constexpr):
    """Row statistics from its chunks' partials; same fields as ``row.stats``."""
    cc = tl.arange(0, CP2)
    m = cc < C
    bi = (j * C + cc).to(tl.int64) * NI
    bf = (j * C + cc).to(tl.int64) * NF
    bad = tl.max(tl.load(pi_ptr + bi, mask=m, other=0))
    kmaxs = tl.load(pi_ptr + bi + 1, mask=m, other=INT_MIN)
    kmax = tl.max(kmaxs)
    kmin = tl.min(tl.load(pi_ptr + bi + 2, mask=m, other=INT_MAX))
    at_max = m & (kmaxs == kmax)
    amax = tl.min(tl.where(at_max, tl.load(pi_ptr + bi + 3, mask=m, other=0), INT_MAX))
    n_pos = tl.sum(tl.load(pi_ptr + bi + 4, mask=m, other=0))
    n_max = tl.sum(tl.where(at_max, tl.load(pi_ptr + bi + 5, mask=m, other=0), 0))
    vmaxs = tl.load(pf_ptr + bf, mask=m, other=float("-inf"))
    vmax = tl.max(vmaxs)
    scale = tl.load(pf_ptr + bf + 1, mask=m, other=0.0)
    acc = tl.load(pf_ptr + bf + 2, mask=m, other=0.0)
    if FROM_LOGITS:
        safe = tl.where(vmax == float("-inf"), 0.0, vmax)
        total = tl.sum(tl.where(vmaxs > float("-inf"), acc * tl.exp((vmaxs - safe) * inv_t), 0.0))
        ref = vmax
        mul = inv_t
    else:
        e = tl.max(tl.where(m, scale, -127.0)).to(tl.int32)
        total = tl.sum(acc * row.pow2(scale.to(tl.int32) - e))
        ref = tl.zeros([], tl.float32)
        mul = row.pow2(-e)
    return bad, kmax, kmin, amax, n_pos, n_max, vmax, ref, mul, total


@triton.jit
def chunk_race(v, keep, cols, j, c, seed_ptr, seed_step, off_ptr, off_step, ref, mul,
               best_f_ptr, best_i_ptr, base, STREAM_IS_POS: tl.constexpr,
               FROM_LOGITS: tl.constexpr, CHUNK: tl.constexpr):
    """Store chunk (j, c)'s race winner among ``keep`` (-inf, INT_MAX when none);
    Philox runs only when something is kept."""
    best = tl.full([], float("-inf"), tl.float32)
    best_i = tl.full([], INT_MAX, tl.int32)
    if tl.max(keep.to(tl.int32)) > 0:
        seed = tl.load(seed_ptr + j * seed_step)
        offset = tl.load(off_ptr + j * off_step)
        stream = stream_of(j, STREAM_IS_POS)
        ex = trng.exponential(trng.block_bits(c * CHUNK, CHUNK, seed, offset, stream))
        race = tl.where(keep, race_key(v, ex, ref, mul, FROM_LOGITS), float("-inf"))
        best = tl.max(race)
        best_i = tl.min(tl.where(race == best, cols, INT_MAX))
    tl.store(best_f_ptr + base, best)
    tl.store(best_i_ptr + base, best_i)


@triton.jit(do_not_specialize=_SIZES)
def stats_kernel(x_ptr, stride_row, V, B, C, idx_ptr, t_ptr, t_val, pi_ptr, pf_ptr, gm_ptr,
                 seed_ptr, seed_step, off_ptr, off_step, best_f_ptr, best_i_ptr,
                 HAS_INDICES: tl.constexpr, FROM_LOGITS: tl.constexpr, T_ROW: tl.constexpr,
                 WITH_GM: tl.constexpr, WITH_RACE: tl.constexpr, STREAM_IS_POS: tl.constexpr,
                 CHUNK: tl.constexpr, GROUP: tl.constexpr):
    """Chunk (j, c): its statistics; with WITH_GM the maxima of its 32-token
    groups; with WITH_RACE (plain sampling) its race winner, scaled by the
    chunk's own maximum (``final_kernel`` rescales). One read of the chunk."""
    j = tl.program_id(0)
    c = tl.program_id(1)
    ok, row_off, _k, _p, _m, greedy, inv_t = request(
        j, idx_ptr, B, stride_row, t_ptr, 0, t_ptr, 1.0, t_ptr, 0.0, t_ptr, t_val,
        HAS_INDICES, False, False, False, False, False, False, FROM_LOGITS, T_ROW)
    cols = c * CHUNK + tl.arange(0, CHUNK)
    v, inb = row.load(x_ptr, row_off, cols, V, FROM_LOGITS)
    if FROM_LOGITS:
        bad_v = (v != v) | (v == float("inf"))
    else:
        bad_v = (v != v) | (v < 0.0) | (v == float("inf"))
    pos = row.positive(v, inb, FROM_LOGITS) & ~bad_v
    key = row.order_key(v, FROM_LOGITS)
    kmax = tl.max(tl.where(pos, key, INT_MIN))
    at_max = pos & (key == kmax)
    vmax = tl.max(tl.where(pos, v, float("-inf")))
    if FROM_LOGITS:
        safe = tl.where(vmax == float("-inf"), 0.0, vmax)
        scale = vmax
        acc = tl.sum(tl.where(pos, tl.exp((v - safe) * inv_t), 0.0))
    else:
        e = row.exponent(tl.maximum(vmax, 0.0))
        scale = e.to(tl.float32)
        acc = tl.sum(tl.where(pos, v, 0.0) * row.pow2(-e))
    base = (j * C + c).to(tl.int64)
    tl.store(pi_ptr + base * NI, tl.max((inb & bad_v).to(tl.int32)))
    tl.store(pi_ptr + base * NI + 1, kmax)
    tl.store(pi_ptr + base * NI + 2, tl.min(tl.where(pos, key, INT_MAX)))
    tl.store(pi_ptr + base * NI + 3, tl.min(tl.where(at_max, cols, INT_MAX)))
    tl.store(pi_ptr + base * NI + 4, tl.sum(pos.to(tl.int32)))
    tl.store(pi_ptr + base * NI + 5, tl.sum(at_max.to(tl.int32)))
    tl.store(pf_ptr + base * NF, vmax)
    tl.store(pf_ptr + base * NF + 1, scale)
    tl.store(pf_ptr + base * NF + 2, acc)
    if WITH_GM:
        G: tl.constexpr = CHUNK // GROUP
        gk = tl.max(tl.reshape(tl.where(pos, key, INT_MIN), (G, GROUP)), axis=1)
        tl.store(gm_ptr + base * G + tl.arange(0, G), gk)
    if WITH_RACE:
        if FROM_LOGITS:
            ref = safe
            mul = inv_t
        else:
            ref = 0.0
            mul = row.pow2(-e)
        chunk_race(v, pos & ~greedy, cols, j, c, seed_ptr, seed_step, off_ptr, off_step, ref, mul,
                   best_f_ptr, best_i_ptr, base, STREAM_IS_POS, FROM_LOGITS, CHUNK)


@triton.jit(do_not_specialize=_SIZES)
def race_kernel(x_ptr, stride_row, V, B, C, idx_ptr, mp_ptr, mp_val, t_ptr, t_val, pi_ptr,
                pf_ptr, seed_ptr, seed_step, off_ptr, off_step, best_f_ptr, best_i_ptr,
                HAS_INDICES: tl.constexpr, FROM_LOGITS: tl.constexpr, MINP_ROW: tl.constexpr,
                T_ROW: tl.constexpr, STREAM_IS_POS: tl.constexpr, CHUNK: tl.constexpr,
                CP2: tl.constexpr):
    """Chunk (j, c): race winner among its tokens that pass min-p (row threshold)."""
    j = tl.program_id(0)
    c = tl.program_id(1)
    ok, row_off, _k, _p, mp, greedy, inv_t = request(
        j, idx_ptr, B, stride_row, mp_ptr, 0, mp_ptr, 1.0, mp_ptr, mp_val, t_ptr, t_val,
        HAS_INDICES, False, False, False, False, True, MINP_ROW, FROM_LOGITS, T_ROW)
    bad, kmax, kmin, amax, n_pos, n_max, vmax, ref, mul, total = combine_stats(
        pi_ptr, pf_ptr, j, C, inv_t, FROM_LOGITS, CP2)
    cols = c * CHUNK + tl.arange(0, CHUNK)
    v, inb = row.load(x_ptr, row_off, cols, V, FROM_LOGITS)
    usable = ok & (bad == 0) & (n_pos > 0) & ~greedy
    keep = usable & row.positive(v, inb, FROM_LOGITS) & (v >= _min_p_floor(mp, vmax))
    chunk_race(v, keep, cols, j, c, seed_ptr, seed_step, off_ptr, off_step, ref, mul,
               best_f_ptr, best_i_ptr, (j * C + c).to(tl.int64), STREAM_IS_POS, FROM_LOGITS,
               CHUNK)


@triton.jit(do_not_specialize=_SIZES)
def final_kernel(pi_ptr, pf_ptr, best_f_ptr, best_i_ptr, C, B, idx_ptr, stride_row,
                 mp_ptr, mp_val, t_ptr, t_val, out_ptr, valid_ptr,
                 HAS_INDICES: tl.constexpr, FROM_LOGITS: tl.constexpr, HAS_MINP: tl.constexpr,
                 MINP_ROW: tl.constexpr, T_ROW: tl.constexpr, LOCAL_SCALE: tl.constexpr,
                 CP2: tl.constexpr):
    """Output j: validity from the row's partials, token = best chunk winner.

    With LOCAL_SCALE the chunk keys were scaled by each chunk's own maximum and
    are brought to the row's scale first (a power of two for probs, an added
    constant in the log domain for logits).
    """
    j = tl.program_id(0)
    ok, _off, _k, _p, _m, greedy, inv_t = request(
        j, idx_ptr, B, stride_row, mp_ptr, 0, mp_ptr, 1.0, mp_ptr, mp_val, t_ptr, t_val,
        HAS_INDICES, False, False, False, False, HAS_MINP, MINP_ROW, FROM_LOGITS, T_ROW)
    bad, kmax, kmin, amax, n_pos, n_max, vmax, ref, mul, total = combine_stats(
        pi_ptr, pf_ptr, j, C, inv_t, FROM_LOGITS, CP2)
    ok &= (bad == 0) & (n_pos > 0)
    cc = tl.arange(0, CP2)
    m = cc < C
    b = (j * C + cc).to(tl.int64)
    keys = tl.load(best_f_ptr + b, mask=m, other=float("-inf"))
    if LOCAL_SCALE:
        scale = tl.load(pf_ptr + b * NF + 1, mask=m, other=0.0)
        if FROM_LOGITS:
            cm = tl.load(pf_ptr + b * NF, mask=m, other=float("-inf"))
            keys = tl.where(keys > float("-inf"), keys + (cm - ref) * inv_t, keys)
        else:
            e = tl.max(tl.where(m, scale, -127.0)).to(tl.int32)
            keys = keys * row.pow2(scale.to(tl.int32) - e)
    best = tl.max(keys)
    token = tl.min(tl.where(m & (keys == best), tl.load(best_i_ptr + b, mask=m, other=INT_MAX),
                            INT_MAX))
    token = tl.where(greedy | (best == float("-inf")), amax, token)
    tl.store(out_ptr + j, tl.where(ok, token, 0).to(tl.int32))
    tl.store(valid_ptr + j, ok.to(tl.int8))


@triton.jit
def _bisect(gk, gw, lo, hi, target_c, target_m, USE_MASS: tl.constexpr):
    """Largest key x in [lo, hi] with count (or mass) of group maxima >= x reaching
    the target; 32 halvings cover any int32 interval."""
    lo = lo.to(tl.int64)
    hi = hi.to(tl.int64)
    for _ in tl.static_range(32):
        mid = (lo + hi + 1) // 2
        ge = gk.to(tl.int64) >= mid
        if USE_MASS:
            enough = tl.sum(tl.where(ge, gw, 0.0)) >= target_m
        else:
            enough = tl.sum(ge.to(tl.int32)) >= target_c
        lo = tl.where(enough & (lo < hi), mid, lo)
        hi = tl.where(~enough & (lo < hi), mid - 1, hi)
    return lo


@triton.jit(do_not_specialize=_SIZES)
def plan_kernel(pi_ptr, pf_ptr, gm_ptr, plan_ptr, C, B, idx_ptr, stride_row,
                k_ptr, k_val, p_ptr, p_val, t_ptr, t_val,
                HAS_INDICES: tl.constexpr, FROM_LOGITS: tl.constexpr, HAS_K: tl.constexpr,
                K_ROW: tl.constexpr, HAS_P: tl.constexpr, P_ROW: tl.constexpr,
                T_ROW: tl.constexpr, JOINT: tl.constexpr, CP2: tl.constexpr,
                GP2: tl.constexpr, G_PER_CHUNK: tl.constexpr):
    """Output j: the candidate bound L (plan[j]), or INT_MAX when the row needs none."""
    j = tl.program_id(0)
    ok, _off, k, p, _m, greedy, inv_t = request(
        j, idx_ptr, B, stride_row, k_ptr, k_val, p_ptr, p_val, k_ptr, 0.0, t_ptr, t_val,
        HAS_INDICES, HAS_K, K_ROW, HAS_P, P_ROW, False, False, FROM_LOGITS, T_ROW)
    bad, kmax, kmin, amax, n_pos, n_max, vmax, ref, mul, total = combine_stats(
        pi_ptr, pf_ptr, j, C, inv_t, FROM_LOGITS, CP2)
    ok &= (bad == 0) & (n_pos > 0) & ~greedy
    k_on = HAS_K & (k > 0) & (k < n_pos)
    p_on = HAS_P & (p < 1.0)
    bound = tl.full([], INT_MAX, tl.int64)
    if ok & (k_on | p_on):
        g = tl.arange(0, GP2)
        gk = tl.load(gm_ptr + j.to(tl.int64) * C * G_PER_CHUNK + g, mask=g < C * G_PER_CHUNK,
                     other=INT_MIN)
        bound = kmin.to(tl.int64)
        if k_on:
            # k groups whose maxima reach L hold at least k tokens >= L.
            bound = _bisect(gk, gk.to(tl.float32), kmin, kmax, k, 0.0, False)
        if p_on & (JOINT | ~k_on):
            gw = row.weight(row.key_value(gk, FROM_LOGITS), gk > INT_MIN, ref, mul, FROM_LOGITS)
            # Group maxima alone reach the target: so do all tokens >= L. The
            # margin absorbs float32 rounding between this sum and select's.
            target = p * total * (1.0 + 1e-5) + 1e-30
            bp = _bisect(gk, gw, kmin, kmax, 0, target, True)
            bound = tl.maximum(bound, bp)
    tl.store(plan_ptr + j, bound.to(tl.int32))


@triton.jit(do_not_specialize=_SIZES)
def compact_kernel(x_ptr, stride_row, V, B, C, idx_ptr, plan_ptr, count_ptr, cand_ptr,
                   HAS_INDICES: tl.constexpr, FROM_LOGITS: tl.constexpr, CHUNK: tl.constexpr,
                   CAP: tl.constexpr):
    """Chunk (j, c): append its tokens with key >= L to row j's candidate buffer.

    The slot range comes from one atomic add on the row's counter (never a
    wait); slots past CAP are dropped and the counter records the overflow.
    Candidates are packed as (key << 32) | (2**32 - 1 - index), so one
    descending sort gives the exact order, ties to the lower index.
    """
    j = tl.program_id(0)
    c = tl.program_id(1)
    bound = tl.load(plan_ptr + j)
    if bound < INT_MAX:
        if HAS_INDICES:
            rid = tl.load(idx_ptr + j)
        else:
            rid = j.to(tl.int64)
        row_off = tl.where((rid >= 0) & (rid < B), rid, 0).to(tl.int64) * stride_row
        cols = c * CHUNK + tl.arange(0, CHUNK)
        v, inb = row.load(x_ptr, row_off, cols, V, FROM_LOGITS)
        key = row.order_key(v, FROM_LOGITS)
        sel = (row.positive(v, inb, FROM_LOGITS) & (key >= bound)).to(tl.int32)
        n = tl.sum(sel)
        if n > 0:
            start = tl.atomic_add(count_ptr + j, n)
            slot = start + tl.cumsum(sel, axis=0) - sel
            packed = (key.to(tl.int64) << 32) | (0xFFFFFFFF - cols.to(tl.int64))
            tl.store(cand_ptr + j.to(tl.int64) * CAP + slot, packed, mask=(sel > 0) & (slot < CAP))


@triton.jit(do_not_specialize=_SIZES)
def select_kernel(x_ptr, stride_row, V, B, C, idx_ptr, pi_ptr, pf_ptr, plan_ptr, count_ptr,
                  cand_ptr, seed_ptr, seed_step, off_ptr, off_step, out_ptr, valid_ptr,
                  k_ptr, k_val, p_ptr, p_val, mp_ptr, mp_val, t_ptr, t_val,
                  HAS_INDICES: tl.constexpr, FROM_LOGITS: tl.constexpr, HAS_K: tl.constexpr,
                  K_ROW: tl.constexpr, HAS_P: tl.constexpr, P_ROW: tl.constexpr,
                  HAS_MINP: tl.constexpr, MINP_ROW: tl.constexpr, T_ROW: tl.constexpr,
                  JOINT: tl.constexpr, STREAM_IS_POS: tl.constexpr, CP2: tl.constexpr,
                  CAP: tl.constexpr, BLOCK: tl.constexpr):
    """Output j: exact order of the candidates (one sort), the kept prefix, the race.

    Worst case (overflow): the single-program path, 1-16 search passes + 1.
    """
    j = tl.program_id(0)
    ok, row_off, k, p, mp, greedy, inv_t = request(
        j, idx_ptr, B, stride_row, k_ptr, k_val, p_ptr, p_val, mp_ptr, mp_val, t_ptr, t_val,
        HAS_INDICES, HAS_K, K_ROW, HAS_P, P_ROW, HAS_MINP, MINP_ROW, FROM_LOGITS, T_ROW)
    bad, kmax, kmin, amax, n_pos, n_max, vmax, ref, mul, total = combine_stats(
        pi_ptr, pf_ptr, j, C, inv_t, FROM_LOGITS, CP2)
    ok &= (bad == 0) & (n_pos > 0)
    token = amax
    if ok & ~greedy:
        seed = tl.load(seed_ptr + j * seed_step)
        offset = tl.load(off_ptr + j * off_step)
        count = tl.load(count_ptr + j)
        bound = tl.load(plan_ptr + j)
        k_on = HAS_K & (k > 0) & (k < n_pos)
        p_on = HAS_P & (p < 1.0)
        fallback = (bound == INT_MAX) | (count > CAP)
        if ~fallback:
            s = tl.arange(0, CAP)
            live = s < count
            packed = tl.load(cand_ptr + j.to(tl.int64) * CAP + s, mask=live,
                             other=-9223372036854775808)
            packed = tl.sort(packed, descending=True)
            key = (packed >> 32).to(tl.int32)
            idx = (0xFFFFFFFF - (packed & 0xFFFFFFFF)).to(tl.int32)
            v = row.key_value(key, FROM_LOGITS)
            w = row.weight(v, live, ref, mul, FROM_LOGITS)
            keep = live
            w_ref = total
            if k_on:
                keep &= s < k
                if not JOINT:
                    w_ref = tl.sum(tl.where(keep, w, 0.0))
            if p_on:
                target = p * w_ref
                before = tl.cumsum(w, axis=0) - w
                keep &= (before < target) | (s == 0)
                # Every candidate kept by top-p and tokens remain outside: the
                # prefix might continue past them (rounding); go the long way.
                last_kept = tl.sum(tl.where(s == count - 1, (before < target).to(tl.int32), 0))
                fallback = (last_kept > 0) & (count < n_pos) & ~(k_on & (k <= count))
            if HAS_MINP:
                keep &= v >= _min_p_floor(mp, vmax)
            e = trng.exponential(trng.token_bits(idx, seed, offset, stream_of(j, STREAM_IS_POS)))
            race = tl.where(keep, race_key(v, e, ref, mul, FROM_LOGITS), float("-inf"))
            best = tl.max(race)
            token = tl.min(tl.where(keep & (race == best), idx, INT_MAX))
        if fallback:
            token = sample_row(x_ptr, row_off, V, j, k, p, mp, kmax, kmin, amax, n_pos, vmax,
                               ref, mul, total, seed, offset, HAS_K, HAS_P, HAS_MINP, JOINT,
                               STREAM_IS_POS, FROM_LOGITS, BLOCK)
    tl.store(out_ptr + j, tl.where(ok, token, 0).to(tl.int32))
    tl.store(valid_ptr + j, ok.to(tl.int8))
