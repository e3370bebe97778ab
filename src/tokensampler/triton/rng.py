"""The random stream of :mod:`tokensampler.rng`, as Triton device functions.

Same constants, same counter layout; tests check every word against the
PyTorch definition bit for bit.
"""

import triton
import triton.language as tl

from .. import rng

_M0: tl.constexpr = tl.constexpr(rng.PHILOX_M0)
_M1: tl.constexpr = tl.constexpr(rng.PHILOX_M1)
_W0: tl.constexpr = tl.constexpr(rng.PHILOX_W0)
_W1: tl.constexpr = tl.constexpr(rng.PHILOX_W1)
_ROUNDS: tl.constexpr = tl.constexpr(rng.PHILOX_ROUNDS)
# 2**31 as an int32 bit pattern (a literal 2**31 would widen the counter to int64).
_CHUNK_COUNTER: tl.constexpr = tl.constexpr(rng.CHUNK_COUNTER - 2**32)
_DRAW: tl.constexpr = tl.constexpr(rng.DRAW_COUNTER)


@triton.jit
def philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on uint32 tensors (Random123's philox4x32_R)."""
    for _ in tl.static_range(_ROUNDS):
        a0 = c0
        a2 = c2
        c0 = tl.math.umulhi(a2, _M1) ^ c1 ^ k0
        c2 = tl.math.umulhi(a0, _M0) ^ c3 ^ k1
        c1 = a2 * _M1
        c3 = a0 * _M0
        k0 = k0 + _W0
        k1 = k1 + _W1
    return c0, c1, c2, c3


@triton.jit
def _philox_at(groups, seed, offset, stream):
    """The four words of Philox call ``groups`` (uint32 tensor) of one output."""
    zero = groups * 0
    s = seed.to(tl.uint64, bitcast=True)
    o = offset.to(tl.uint64, bitcast=True)
    k0 = zero + (s & 0xFFFFFFFF).to(tl.uint32)
    k1 = zero + (s >> 32).to(tl.uint32)
    c1 = zero + stream.to(tl.uint32)
    c2 = zero + (o & 0xFFFFFFFF).to(tl.uint32)
    c3 = zero + (o >> 32).to(tl.uint32)
    return philox(groups, c1, c2, c3, k0, k1)


@triton.jit
def block_bits(start, BLOCK: tl.constexpr, seed, offset, stream, draw):
    """Random bits (uint32) of tokens ``start .. start + BLOCK - 1`` in draw ``draw``.

    ``start`` must be a multiple of 4: one Philox call serves four tokens, and
    the words are interleaved back into token order.
    """
    groups = (tl.arange(0, BLOCK // 4) + start // 4 + draw * _DRAW).to(tl.uint32)
    w0, w1, w2, w3 = _philox_at(groups, seed, offset, stream)
    # join appends a trailing axis, so [g, a, b] holds (w0, w2 | w1, w3)[b][a]
    # and flattens to w0, w1, w2, w3 at 4g .. 4g + 3.
    words = tl.join(tl.join(w0, w2), tl.join(w1, w3))
    return tl.reshape(words, (BLOCK,))


@triton.jit
def token_bits(tokens, seed, offset, stream, draw):
    """Random bits (uint32) of arbitrary token ids (int32 tensor) in draw
    ``draw``: one Philox call each."""
    w0, w1, w2, w3 = _philox_at((tokens // 4 + draw * _DRAW).to(tl.uint32), seed, offset, stream)
    lane = tokens % 4
    return tl.where(lane == 0, w0, tl.where(lane == 1, w1, tl.where(lane == 2, w2, w3)))


@triton.jit
def chunk_bits(chunks, seed, offset, stream, draw):
    """Random bits (uint32) of chunk ids (int32 tensor) in draw ``draw``: the
    chunk draws of rng.py."""
    groups = (chunks // 4 + _CHUNK_COUNTER + draw * _DRAW).to(tl.uint32, bitcast=True)
    w0, w1, w2, w3 = _philox_at(groups, seed, offset, stream)
    lane = chunks % 4
    return tl.where(lane == 0, w0, tl.where(lane == 1, w1, tl.where(lane == 2, w2, w3)))


@triton.jit
def exponential(bits):
    """``E = -log(U)``, ``U = (bits + 0.5) / 2**32``, in float32 with small relative error.

    For ``U < 1/2`` the float32 ``U`` is accurate to 2**-24 relative and so is
    ``-log(U)``. For ``U >= 1/2`` we take ``q = 1 - U`` (exact from the integer)
    and ``-log1p(-q)`` by Goldberg's identity ``log(v) * q / (1 - v)`` with
    ``v = fl(1 - q)``, whose rounding the ratio cancels; ``v == 1`` means
    ``q < 2**-25`` where ``-log1p(-q) = q`` to float32 precision.
    """
    low = bits < 0x80000000
    u = (bits.to(tl.float32) + 0.5) * 2.3283064365386963e-10
    q = ((0xFFFFFFFF - bits).to(tl.float32) + 0.5) * 2.3283064365386963e-10
    v = 1.0 - q
    lg = tl.log(tl.where(low, u, v))
    one_minus_v = tl.where(v == 1.0, 1.0, 1.0 - v)
    e_high = tl.where(v == 1.0, q, tl.math.div_rn(-lg * q, one_minus_v))
    return tl.where(low, -lg, e_high)
