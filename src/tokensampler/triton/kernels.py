"""Single-program-per-row kernels: renorm / mask / softmax, and the bounded
fallback of the pruned sampler (``sample_row``).

Plan over one row:

1. ``row.stats``: one pass.
2. The kept prefix of the order, as a threshold key ``t`` plus ``r``, the
   number of tokens tied at ``t`` that are kept (lowest indices first):
   top-k is a count search, top-p a mass search (``row.search``, at most 8
   passes each, fewer when the row's keys span a smaller range). top-k 1,
   top-p 0 and greedy rows need no search: the argmax from ``stats`` is the
   answer.
3. A final pass: the race over the kept tokens (sampling), or the output row
   (renorm, mask, softmax).

Worst case per row: 1 + 8 (+ 8 when top-k and top-p are both active) + 1
passes. No loop waits on a float comparison; there is no communication
between programs. The sampling entry point for callers is chunked.py.
"""

import triton
import triton.language as tl

from .. import reference
from . import rng as trng
from . import row

KEY_NONE: tl.constexpr = tl.constexpr(-2147483649)  # below every int32 key: keep all
# Top-p alone draws by adaptive rejection: the reference's constants.
ROUNDS: tl.constexpr = tl.constexpr(reference.ROUNDS)
DRAWS: tl.constexpr = tl.constexpr(reference.DRAWS)


@triton.jit
def _tie_weight(t, ref, mul, FROM_LOGITS: tl.constexpr):
    v = row.key_value(t, FROM_LOGITS)
    return row.weight(v, v == v, ref, mul, FROM_LOGITS)


@triton.jit
def _prefix(x_ptr, row_off, V, k, p, kmax, kmin, n_pos, ref, mul, total,
            HAS_K: tl.constexpr, HAS_P: tl.constexpr, JOINT: tl.constexpr,
            WANT_MASS: tl.constexpr, FROM_LOGITS: tl.constexpr, BLOCK: tl.constexpr):
    """The kept prefix: ``(t, r, length, kept_mass)``.

    Kept tokens are those with key > t, plus the first ``r`` (by index) with
    key == t. ``length`` counts them; ``kept_mass`` is their scaled mass when
    ``WANT_MASS`` (renorm) or top_k_first needs it.
    """
    t = tl.full([], KEY_NONE, tl.int64)
    r = tl.zeros([], tl.int32)
    length = n_pos
    kept_mass = total
    lo = kmin.to(tl.int64)
    lo_c = n_pos
    lo_m = total
    if HAS_K:
        if (k > 0) & (k < n_pos):
            need_mass: tl.constexpr = WANT_MASS or (HAS_P and not JOINT)
            tk, gec, gem, gtc, gtm = row.search(x_ptr, row_off, V, kmin, kmax, n_pos, total,
                                                k, 0.0, ref, mul, False, need_mass,
                                                FROM_LOGITS, BLOCK)
            t = tk
            r = k - gtc
            length = k
            kept_mass = gtm + r.to(tl.float32) * _tie_weight(tk, ref, mul, FROM_LOGITS)
            if not JOINT:
                # top-p inside the top-k set: its prefix starts no lower than t.
                lo = tk
                lo_c = gec
                lo_m = gem
    if HAS_P:
        if p < 1.0:
            if JOINT:
                target = p * total
            else:
                target = p * kept_mass
            tp, gec, gem, gtc, gtm = row.search(x_ptr, row_off, V, lo, kmax, lo_c, lo_m,
                                                0, target, ref, mul, True, True,
                                                FROM_LOGITS, BLOCK)
            ties = gec - gtc
            wt = _tie_weight(tp, ref, mul, FROM_LOGITS)
            # Ties at t each add wt: keep while the mass before them is below target.
            q = tl.math.div_rn(target - gtm, tl.where(wt > 0.0, wt, 1.0))
            rq = tl.where(wt > 0.0, tl.minimum(tl.maximum(tl.ceil(q), 1.0), ties.to(tl.float32)),
                          ties.to(tl.float32))
            rp = rq.to(tl.int32)
            if gtc + rp < length:
                t = tp
                r = rp
                length = gtc + rp
                kept_mass = gtm + rp.to(tl.float32) * wt
    return t, r, length, kept_mass


@triton.jit
def _min_p_floor(mp, vmax):
    """The least float32 >= mp * vmax, so that ``v >= floor`` is min-p's rule exactly.

    The product of two float32 is exact in float64; rounding it to float32 and
    stepping up one ulp when that fell short gives the exact float32 bound.
    """
    prod = mp.to(tl.float64) * vmax.to(tl.float64)
    f = prod.to(tl.float32)
    up = (f.to(tl.int32, bitcast=True) + 1).to(tl.float32, bitcast=True)
    f = tl.where((f.to(tl.float64) < prod) & (f >= 0.0), up, f)
    return tl.where(mp <= 0.0, float("-inf"), f)


@triton.jit
def _param(ptr, val, j, ON: tl.constexpr, PER_ROW: tl.constexpr, DTYPE: tl.constexpr):
    """A per-request value: loaded for output ``j``, or the scalar ``val``."""
    if ON and PER_ROW:
        return tl.load(ptr + j).to(DTYPE)
    return tl.cast(val, DTYPE)


@triton.jit
def _k_param(ptr, val, j, ON: tl.constexpr, PER_ROW: tl.constexpr):
    """A per-request top-k as int32: as ``_param``, but clamped to
    [-1, 2**31 - 1] first, so that an int64 k past int32 stays off (k >= V)
    as the reference has it, rather than wrapping (2**32 + 3 became 3; found
    by the eighteenth session's review). Scalars come in range (params.py)."""
    if ON and PER_ROW:
        k = tl.load(ptr + j)
        return tl.minimum(tl.maximum(k, -1), 2147483647).to(tl.int32)
    return tl.cast(val, tl.int32)


@triton.jit
def stream_of(j, STREAM_IS_POS: tl.constexpr):
    """The Philox stream word of output j (rng.py): its position, or 0 with per-output seeds."""
    if STREAM_IS_POS:
        return j
    return j * 0


@triton.jit
def kept_in_block(v, inb, t, r, ties, FROM_LOGITS: tl.constexpr):
    """Kept mask of one block of the prefix (key > t, or among the first r ties at t).

    ``ties`` counts the ties seen in earlier blocks (blocks go in index order);
    returns the mask and the updated count.
    """
    pos = row.positive(v, inb, FROM_LOGITS)
    key = row.order_key(v, FROM_LOGITS).to(tl.int64)
    tie = (pos & (key == t)).to(tl.int32)
    rank = ties + tl.cumsum(tie, axis=0) - tie
    keep = pos & ((key > t) | ((tie > 0) & (rank < r)))
    return keep, ties + tl.sum(tie)


@triton.jit
def pick_chunk(log_mass, cc, live, seed, offset, stream, draw):
    """Stage one of the race (rng.py): the chunk ``argmax_c log W_c - log E_c``
    among ``cc`` (live, ``W_c > 0``) with draw ``draw``'s numbers, the lowest on ties."""
    e = trng.exponential(trng.chunk_bits(cc, seed, offset, stream, draw))
    key = tl.where(live & (log_mass > float("-inf")), log_mass - tl.log(e), float("-inf"))
    return tl.min(tl.where(key == tl.max(key), cc, 2147483647))


@triton.jit
def _in_set(v, inb, cols, t, r, ibound, ties, floor, FROM_LOGITS: tl.constexpr):
    """Mask of a block's tokens in the set ``key > t``, or ``key == t`` among
    the first ``r`` such tokens by index and below index ``ibound``, with
    ``v >= floor``; ``ties`` counts the ties at ``t`` of earlier blocks."""
    keep, ties = kept_in_block(v, inb, t, r, ties, FROM_LOGITS)
    key = row.order_key(v, FROM_LOGITS).to(tl.int64)
    keep &= (key > t) | (cols < ibound)
    return keep & (v >= floor), ties


@triton.jit
def _set_masses(x_ptr, row_off, V, t, r, ibound, floor, ref, mul, FROM_LOGITS: tl.constexpr,
                BLOCK: tl.constexpr, CHUNK: tl.constexpr, CP2: tl.constexpr):
    """One pass: the set's log mass in each chunk, and the ties at ``t`` before each."""
    cc = tl.arange(0, CP2)
    mass = tl.zeros([CP2], tl.float32)
    ties_before = tl.zeros([CP2], tl.int32)
    ties = tl.zeros([], tl.int32)
    for c in range(0, tl.cdiv(V, CHUNK)):
        ties_before = tl.where(cc == c, ties, ties_before)
        m = tl.zeros([], tl.float32)
        for start in range(c * CHUNK, tl.minimum(c * CHUNK + CHUNK, V), BLOCK):
            cols = start + tl.arange(0, BLOCK)
            v, inb = row.load(x_ptr, row_off, cols, V, FROM_LOGITS)
            keep, ties = _in_set(v, inb, cols, t, r, ibound, ties, floor, FROM_LOGITS)
            m += tl.sum(row.weight(v, keep, ref, mul, FROM_LOGITS))
        mass = tl.where(cc == c, m, mass)
    return tl.where(mass > 0.0, tl.log(mass), float("-inf")), ties_before


@triton.jit
def _race_set(x_ptr, row_off, V, t, r, ibound, floor, ref, mul, seed, offset, stream, draw,
              log_mass, ties_before, amax, FROM_LOGITS: tl.constexpr, BLOCK: tl.constexpr,
              CHUNK: tl.constexpr, CP2: tl.constexpr):
    """Draw ``draw`` of the two-stage race over the set of ``_in_set``: a chunk
    by the set's masses (``_set_masses``; rows longer than CHUNK), then the
    race among the set's tokens of that chunk (one chunk read)."""
    chunk = tl.zeros([], tl.int32)
    ties = tl.zeros([], tl.int32)
    if V > CHUNK:
        cc = tl.arange(0, CP2)
        chunk = pick_chunk(log_mass, cc, cc < tl.cdiv(V, CHUNK), seed, offset, stream, draw)
        ties = tl.sum(tl.where(cc == chunk, ties_before, 0))
    best = tl.full([], float("-inf"), tl.float32)
    best_i = amax
    for start in range(chunk * CHUNK, tl.minimum(chunk * CHUNK + CHUNK, V), BLOCK):
        cols = start + tl.arange(0, BLOCK)
        v, inb = row.load(x_ptr, row_off, cols, V, FROM_LOGITS)
        keep, ties = _in_set(v, inb, cols, t, r, ibound, ties, floor, FROM_LOGITS)
        if tl.max(keep.to(tl.int32)) > 0:
            e = trng.exponential(trng.block_bits(start, BLOCK, seed, offset, stream, draw))
            race = tl.where(keep, race_key(v, e, ref, mul, FROM_LOGITS), float("-inf"))
            bk = tl.max(race)
            bi = tl.min(tl.where(race == bk, cols, 2147483647))
            better = bk > best
            best_i = tl.where(better, bi, best_i)
            best = tl.where(better, bk, best)
    return best_i


@triton.jit
def _is_kept(x_ptr, row_off, V, d, t, r, FROM_LOGITS: tl.constexpr, BLOCK: tl.constexpr):
    """Whether token ``d`` is in the prefix ``key > t`` or among the first ``r``
    ties at ``t``; a tie's rank takes one pass over the tokens before it."""
    kd = row.order_key(tl.load(x_ptr + row_off + d).to(tl.float32), FROM_LOGITS).to(tl.int64)
    kept = kd > t
    if kd == t:
        rank = tl.zeros([], tl.int32)
        for start in range(0, d, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            v, inb = row.load(x_ptr, row_off, cols, V, FROM_LOGITS)
            tie = row.positive(v, inb, FROM_LOGITS) & (cols < d)
            tie &= row.order_key(v, FROM_LOGITS).to(tl.int64) == t
            rank += tl.sum(tie.to(tl.int32))
        kept = rank < r
    return kept, kd


@triton.jit
def reject_row(x_ptr, row_off, V, t, r, ref, mul, seed, offset, stream, amax,
               FROM_LOGITS: tl.constexpr, BLOCK: tl.constexpr, CHUNK: tl.constexpr,
               CP2: tl.constexpr, ROUNDS: tl.constexpr, DRAWS: tl.constexpr):
    """Top-p alone, one program (docs/semantics.md section 5): rounds of
    DRAWS draws from a set holding the kept prefix (``key > t`` or among the
    first ``r`` ties at ``t``), starting with the whole row; the first kept
    draw is the token; a round with none shrinks the set to the tokens before
    its earliest draw in the order. After ROUNDS rounds, the race over the
    kept prefix. Worst case ROUNDS + 1 passes plus one chunk per draw."""
    at = tl.full([], KEY_NONE, tl.int64)
    ab = tl.full([], 2147483647, tl.int32)
    token = tl.full([], -1, tl.int32)
    for k in range(ROUNDS):
        if token < 0:
            log_mass, ties_before = _set_masses(x_ptr, row_off, V, at, 2147483647, ab,
                                                float("-inf"), ref, mul, FROM_LOGITS, BLOCK,
                                                CHUNK, CP2)
            fk = tl.full([], KEY_NONE, tl.int64)
            fi = tl.full([], 2147483647, tl.int32)
            for q in range(k * DRAWS, k * DRAWS + DRAWS):
                if token < 0:
                    d = _race_set(x_ptr, row_off, V, at, 2147483647, ab, float("-inf"), ref, mul,
                                  seed, offset, stream, q, log_mass, ties_before, amax,
                                  FROM_LOGITS, BLOCK, CHUNK, CP2)
                    kept, kd = _is_kept(x_ptr, row_off, V, d, t, r, FROM_LOGITS, BLOCK)
                    token = tl.where(kept, d, token)
                    earlier = (kd > fk) | ((kd == fk) & (d < fi))
                    fk = tl.where(earlier, kd, fk)
                    fi = tl.where(earlier, d, fi)
            at = fk
            ab = fi
    if token < 0:
        token = _last_race(x_ptr, row_off, V, t, r, ref, mul, seed, offset, stream, amax,
                           FROM_LOGITS, BLOCK, CHUNK, CP2)
    return token


@triton.jit
def _last_race(x_ptr, row_off, V, t, r, ref, mul, seed, offset, stream, amax,
               FROM_LOGITS: tl.constexpr, BLOCK: tl.constexpr, CHUNK: tl.constexpr,
               CP2: tl.constexpr):
    """The race over the kept prefix ``(t, r)`` with draw ROUNDS * DRAWS, once
    every round of draws has failed: 1 pass and one chunk."""
    log_mass, ties_before = _set_masses(x_ptr, row_off, V, t, r, 2147483647, float("-inf"),
                                        ref, mul, FROM_LOGITS, BLOCK, CHUNK, CP2)
    return _race_set(x_ptr, row_off, V, t, r, 2147483647, float("-inf"), ref, mul, seed,
                     offset, stream, ROUNDS * DRAWS, log_mass, ties_before, amax,
                     FROM_LOGITS, BLOCK, CHUNK, CP2)


@triton.jit
def final_race(x_ptr, row_off, V, p, kmax, kmin, amax, n_pos, ref, mul, total, seed, offset,
               stream, FROM_LOGITS: tl.constexpr, BLOCK: tl.constexpr, CHUNK: tl.constexpr,
               CP2: tl.constexpr):
    """Top-p alone after its last round of draws: the race over the kept
    prefix with draw ROUNDS * DRAWS (the search, at most 8 passes, then 1
    pass and one chunk)."""
    t, r, length, _ = _prefix(x_ptr, row_off, V, 0, p, kmax, kmin, n_pos, ref, mul, total,
                              False, True, False, False, FROM_LOGITS, BLOCK)
    token = amax
    if length > 1:
        token = _last_race(x_ptr, row_off, V, t, r, ref, mul, seed, offset, stream, amax,
                           FROM_LOGITS, BLOCK, CHUNK, CP2)
    return token


@triton.jit
def sample_row(x_ptr, row_off, V, j, k, p, mp, kmax, kmin, amax, n_pos, vmax, ref, mul, total,
               seed, offset, HAS_K: tl.constexpr, HAS_P: tl.constexpr, HAS_MINP: tl.constexpr,
               JOINT: tl.constexpr, STREAM_IS_POS: tl.constexpr, FROM_LOGITS: tl.constexpr,
               BLOCK: tl.constexpr, CHUNK: tl.constexpr, CP2: tl.constexpr):
    """One program, one valid row: the kept prefix (0-16 search passes), the
    kept mass of each chunk (1 pass, rows longer than CHUNK only), then the
    race in the chosen chunk (one chunk). Worst case 1 + 16 + 1 + 1 passes.
    Rows whose only filter is top-p draw by rejection (``reject_row``: at most
    ROUNDS + 1 more passes).

    The bounded fallback of the pruned path (chunked.py) when its candidate
    buffer overflows; ``CP2`` bounds the number of chunks.
    """
    token = amax
    t, r, length, _ = _prefix(x_ptr, row_off, V, k, p, kmax, kmin, n_pos, ref, mul, total,
                              HAS_K, HAS_P, JOINT, False, FROM_LOGITS, BLOCK)
    min_p_floor = float("-inf")
    if HAS_MINP:
        min_p_floor = _min_p_floor(mp, vmax)
    stream = stream_of(j, STREAM_IS_POS)
    if top_p_alone(k, mp, V, HAS_K, HAS_P, HAS_MINP):
        token = reject_row(x_ptr, row_off, V, t, r, ref, mul, seed, offset, stream, amax,
                           FROM_LOGITS, BLOCK, CHUNK, CP2, ROUNDS, DRAWS)
    elif length > 1:
        log_mass, ties_before = _set_masses(x_ptr, row_off, V, t, r, 2147483647, min_p_floor,
                                            ref, mul, FROM_LOGITS, BLOCK, CHUNK, CP2)
        token = _race_set(x_ptr, row_off, V, t, r, 2147483647, min_p_floor, ref, mul, seed,
                          offset, stream, 0, log_mass, ties_before, amax, FROM_LOGITS, BLOCK,
                          CHUNK, CP2)
    return token


@triton.jit
def top_p_alone(k, mp, V, HAS_K: tl.constexpr, HAS_P: tl.constexpr, HAS_MINP: tl.constexpr):
    """Whether an output's only active filter is top-p (top-k off: ``k <= 0``
    or ``k >= V``; min-p off: ``<= 0``): it draws by rejection."""
    alone = HAS_P
    if HAS_K:
        alone = alone & ~((k > 0) & (k < V))
    if HAS_MINP:
        alone = alone & ~(mp > 0.0)
    return alone


@triton.jit
def race_key(v, e, ref, mul, FROM_LOGITS: tl.constexpr):
    """The exponential race key, monotone in w / E: logits in the log domain
    (no overflow at any temperature), probs as scaled weight over E (IEEE division)."""
    if FROM_LOGITS:
        return (v - ref) * mul - tl.log(e)
    else:
        return tl.math.div_rn(v * mul, e)


@triton.jit
def filter_kernel(x_ptr, stride_row, out_ptr, out_stride, V, k_ptr, k_val, p_ptr, p_val,
                  t_ptr, t_val, MODE: tl.constexpr, HAS_K: tl.constexpr, K_ROW: tl.constexpr,
                  HAS_P: tl.constexpr, P_ROW: tl.constexpr, T_ROW: tl.constexpr,
                  BLOCK: tl.constexpr):
    """Row ``i`` = program ``i``. MODE 0: renorm probs; 1: mask logits; 2: softmax.

    Passes: stats 1, thresholds 0-8, write 1.
    """
    FROM_LOGITS: tl.constexpr = MODE != 0
    i = tl.program_id(0)
    row_off = i.to(tl.int64) * stride_row
    out_off = i.to(tl.int64) * out_stride
    k = _k_param(k_ptr, k_val, i, HAS_K, K_ROW)
    p = _param(p_ptr, p_val, i, HAS_P, P_ROW, tl.float32)
    temp = _param(t_ptr, t_val, i, MODE == 2, T_ROW, tl.float32)
    ok = ~((p != p) | (p < 0.0) | (p > 1.0))
    ok &= ~((temp != temp) | (temp < 0.0) | (temp == float("inf")))
    greedy = (MODE == 2) & (temp == 0.0)
    inv_t = row.inverse_temperature(temp)
    bad, kmax, kmin, amax, n_pos, n_max, vmax, ref, mul, total = row.stats(
        x_ptr, row_off, V, inv_t, FROM_LOGITS, BLOCK)
    ok &= (bad == 0) & (n_pos > 0)
    t = tl.full([], KEY_NONE, tl.int64)
    r = tl.zeros([], tl.int32)
    kept_mass = total
    if ok & (MODE != 2):
        t, r, _, kept_mass = _prefix(x_ptr, row_off, V, k, p, kmax, kmin, n_pos, ref, mul,
                                     total, HAS_K, HAS_P, False, MODE == 0, FROM_LOGITS, BLOCK)
    ties = tl.zeros([], tl.int32)
    for start in range(0, V, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        v, inb = row.load(x_ptr, row_off, cols, V, FROM_LOGITS)
        keep, ties = kept_in_block(v, inb, t, r, ties, FROM_LOGITS)
        if MODE == 0:
            w = row.weight(v, keep, ref, mul, False)
            y = tl.math.div_rn(w, kept_mass)
        elif MODE == 1:
            y = tl.where(keep, v, float("-inf"))
        else:
            pos = row.positive(v, inb, True)
            if greedy:
                y = tl.where(pos & (row.order_key(v, True) == kmax), 1.0 / n_max.to(tl.float32),
                             0.0)
            else:
                y = tl.math.div_rn(row.weight(v, pos, ref, mul, True), total)
        y = tl.where(ok, y, float("nan"))
        tl.store(out_ptr + out_off + cols, y.to(out_ptr.dtype.element_ty), mask=inb)
