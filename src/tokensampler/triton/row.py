"""Per-row building blocks shared by the sampling and filter kernels.

A program owns one row and walks it in blocks of ``BLOCK`` columns. Three
kinds of pass exist, each one read of the row:

* ``stats``: validity, the largest and smallest order keys of the tokens with
  positive weight, the argmax, and the total mass (probs: exact power-of-two
  scaling so no sum can overflow; logits: online softmax).
* ``search``: the largest order key ``t`` whose count or mass of tokens with
  key >= t reaches a target. Each pass tests 15 pivots at once, so the key
  interval shrinks 16-fold per pass; the number of passes is the number of hex
  digits of the initial interval, at most 8 for 32-bit keys. The loop bound is
  computed before the loop starts, never from a float comparison.
* the final pass of each kernel (race or write), in kernels.py.

Order keys are int32 whose integer order is the float order of the values
(sign-magnitude folded; -0.0 and +0.0 both map to 0), so thresholds are exact
and ties are exact equalities.
"""

import triton
import triton.language as tl

NPIV: tl.constexpr = tl.constexpr(16)


@triton.jit
def load(x_ptr, row_off, cols, V, FROM_LOGITS: tl.constexpr):
    """A block of the row in float32 (exact for fp16/bf16), and the in-range mask."""
    return load_where(x_ptr, row_off, cols, V, cols < V, FROM_LOGITS)


@triton.jit
def load_where(x_ptr, row_off, cols, V, need, FROM_LOGITS: tl.constexpr):
    """``load``, reading only where ``need`` holds; elsewhere the value of a
    token past the row's end (not positive), with ``inb`` unchanged."""
    inb = cols < V
    if FROM_LOGITS:
        v = tl.load(x_ptr + row_off + cols, mask=inb & need, other=float("-inf")).to(tl.float32)
    else:
        v = tl.load(x_ptr + row_off + cols, mask=inb & need, other=0.0).to(tl.float32)
    return v, inb


@triton.jit
def positive(v, inb, FROM_LOGITS: tl.constexpr):
    """Tokens with positive weight: the only ones filters and races look at."""
    if FROM_LOGITS:
        return inb & (v > float("-inf"))
    else:
        return inb & (v > 0.0)


@triton.jit
def order_key(v, FROM_LOGITS: tl.constexpr):
    """An int32 in the order of the float values (-0.0 keyed as +0.0:
    ``-0.0 + 0.0`` is +0.0, one add where a compare and a select were two)."""
    b = (v + 0.0).to(tl.int32, bitcast=True)
    if FROM_LOGITS:
        b = b ^ ((b >> 31) & 0x7FFFFFFF)
    return b


@triton.jit
def key_value(key, FROM_LOGITS: tl.constexpr):
    """Inverse of :func:`order_key`."""
    b = key.to(tl.int32)
    if FROM_LOGITS:
        b = b ^ ((b >> 31) & 0x7FFFFFFF)
    return b.to(tl.float32, bitcast=True)


@triton.jit
def weight(v, pos, ref, mul, FROM_LOGITS: tl.constexpr):
    """Scaled weights: probs ``v * mul`` (mul a power of two), logits ``exp((v - ref) * mul)``."""
    if FROM_LOGITS:
        return tl.where(pos, tl.exp((v - ref) * mul), 0.0)
    else:
        return tl.where(pos, v * mul, 0.0)


@triton.jit
def inverse_temperature(temp):
    """``1 / temp`` (1 where ``temp`` is 0: greedy rows do not use it), at
    most the largest float32. Below about 2.9e-39 (a float32 denormal) the
    reciprocal overflows, and ``(v - ref) * inf`` is NaN at the row's largest
    logit (independent review, fourteenth session). Clamped, the row's
    largest logits keep weight 1, and a logit ``g`` below them gets
    ``exp(-g * 3.4e38)`` where softmax(logits / temp) gives ``exp(-g /
    temp)``: both 0 in float32 unless ``g`` is below about 3e-37, which
    needs logits of magnitude below about 1e-30."""
    return tl.minimum(tl.math.div_rn(1.0, tl.where(temp > 0.0, temp, 1.0)),
                      3.4028234663852886e38)


@triton.jit
def pow2(n):
    """2**n as float32 for integer n, exact; 0 below 2**-126, clamped at 2**127."""
    n = tl.minimum(n, 127)
    f = ((tl.maximum(n, -126) + 127) << 23).to(tl.float32, bitcast=True)
    return tl.where(n < -126, 0.0, f)


@triton.jit
def exponent(v):
    """floor(log2(v)) for normal v > 0 (-127 for zero and denormals), capped at 126
    so that the scale 2**-exponent stays a normal float."""
    return tl.minimum(((v.to(tl.int32, bitcast=True) >> 23) & 0xFF) - 127, 126)


@triton.jit
def stats(x_ptr, row_off, V, inv_t, FROM_LOGITS: tl.constexpr, BLOCK: tl.constexpr):
    """One pass: ``bad, kmax, kmin, argmax, n_pos, n_max, vmax, ref, mul, total``.

    ``ref``/``mul`` turn values into scaled weights (see :func:`weight`) and
    ``total`` is the row's mass in those units.
    """
    bad = tl.zeros([], tl.int32)
    kmax = tl.full([], -2147483648, tl.int32)
    kmin = tl.full([], 2147483647, tl.int32)
    amax = tl.zeros([], tl.int32)
    n_pos = tl.zeros([], tl.int32)
    n_max = tl.zeros([], tl.int32)
    vmax = tl.full([], float("-inf"), tl.float32)
    e_run = tl.full([], -127, tl.int32)
    acc = tl.zeros([], tl.float32)
    for start in range(0, V, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        v, inb = load(x_ptr, row_off, cols, V, FROM_LOGITS)
        if FROM_LOGITS:
            bad_v = (v != v) | (v == float("inf"))
        else:
            bad_v = (v != v) | (v < 0.0) | (v == float("inf"))
        bad = tl.maximum(bad, tl.max((inb & bad_v).to(tl.int32)))
        pos = positive(v, inb, FROM_LOGITS) & ~bad_v
        key = order_key(v, FROM_LOGITS)
        bk = tl.max(tl.where(pos, key, -2147483648))
        bidx = tl.min(tl.where(pos & (key == bk), cols, 2147483647))
        bcount = tl.sum((pos & (key == bk)).to(tl.int32))
        n_max = tl.where(bk > kmax, bcount, tl.where(bk == kmax, n_max + bcount, n_max))
        amax = tl.where(bk > kmax, bidx, amax)
        kmax = tl.maximum(kmax, bk)
        kmin = tl.minimum(kmin, tl.min(tl.where(pos, key, 2147483647)))
        n_pos += tl.sum(pos.to(tl.int32))
        vs = tl.where(pos, v, float("-inf"))
        bmax = tl.max(vs)
        if FROM_LOGITS:
            m_new = tl.maximum(vmax, bmax)
            safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            acc = acc * tl.exp((vmax - safe) * inv_t) + tl.sum(
                tl.where(pos, tl.exp((v - safe) * inv_t), 0.0))
            vmax = m_new
        else:
            e_new = tl.maximum(e_run, exponent(tl.maximum(bmax, 0.0)))
            acc = acc * pow2(e_run - e_new) + tl.sum(tl.where(pos, v, 0.0) * pow2(-e_new))
            e_run = e_new
            vmax = tl.maximum(vmax, bmax)
    if FROM_LOGITS:
        ref = vmax
        mul = inv_t
    else:
        ref = tl.zeros([], tl.float32)
        mul = pow2(-e_run)
    return bad, kmax, kmin, amax, n_pos, n_max, vmax, ref, mul, acc


@triton.jit
def search(x_ptr, row_off, V, lo, hi, ge_c, ge_m, target_c, target_m, ref, mul,
           USE_MASS: tl.constexpr, WITH_MASS: tl.constexpr, FROM_LOGITS: tl.constexpr,
           BLOCK: tl.constexpr):
    """Largest key ``t`` in ``[lo, hi]`` whose count (or mass) of keys >= t reaches the target.

    Requires f(lo) >= target; ``ge_c``/``ge_m`` are f(lo). Masses are summed
    only when ``WITH_MASS`` (``USE_MASS`` implies it). Returns
    ``t, count(>= t), mass(>= t), count(> t), mass(> t)``. Worst case 8 passes
    (32-bit keys, 16-fold narrowing per pass); the count is fixed before the
    loop from ``hi - lo``. Float rounding can only move the answer by as much
    as it moves the sums, never stall the loop.
    """
    lo = lo.to(tl.int64)
    hi = hi.to(tl.int64)
    gt_c = tl.zeros([], tl.int32)
    gt_m = tl.zeros([], tl.float32)
    n_pass = tl.zeros([], tl.int32)
    for d in tl.static_range(8):
        n_pass += ((hi - lo) >> (4 * d) > 0).to(tl.int32)
    j = tl.arange(0, NPIV).to(tl.int64)
    for _ in range(n_pass):
        piv = lo + ((hi - lo + 1) * j) // NPIV
        cnt = tl.zeros([NPIV], tl.int32)
        mass = tl.zeros([NPIV], tl.float32)
        for start in range(0, V, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            v, inb = load(x_ptr, row_off, cols, V, FROM_LOGITS)
            pos = positive(v, inb, FROM_LOGITS)
            key = order_key(v, FROM_LOGITS).to(tl.int64)
            ge = (key[:, None] >= piv[None, :]) & pos[:, None]
            cnt += tl.sum(ge.to(tl.int32), axis=0)
            if WITH_MASS:
                w = weight(v, pos, ref, mul, FROM_LOGITS)
                mass += tl.sum(tl.where(ge, w[:, None], 0.0), axis=0)
        if USE_MASS:
            ok = mass >= target_m
        else:
            ok = cnt >= target_c
        jb = tl.max(tl.where(ok | (j == 0), j, 0))
        has_next = jb + 1 < NPIV
        new_lo = tl.sum(tl.where(j == jb, piv, 0))
        nxt = tl.sum(tl.where(j == jb + 1, piv, 0))
        hi = tl.where(has_next, nxt - 1, hi)
        lo = new_lo
        ge_c = tl.where(jb == 0, ge_c, tl.sum(tl.where(j == jb, cnt, 0)))
        ge_m = tl.where(jb == 0, ge_m, tl.sum(tl.where(j == jb, mass, 0.0)))
        gt_c = tl.where(has_next, tl.sum(tl.where(j == jb + 1, cnt, 0)), gt_c)
        gt_m = tl.where(has_next, tl.sum(tl.where(j == jb + 1, mass, 0.0)), gt_m)
    return lo, ge_c, ge_m, gt_c, gt_m
