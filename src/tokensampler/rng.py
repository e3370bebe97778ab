"""The random stream: one definition, shared by every backend.

Every draw in tokensampler is a two-stage *exponential race*
(docs/semantics.md section 5): output ``j`` samples row ``r = indices[j]`` by
picking a chunk of CHUNK_TOKENS tokens, ``argmax_c W_c / F_c`` over the chunks'
kept masses, then among the kept tokens of that chunk ``argmax_i w_i / E_i``,
with ``E = -log(U)`` and ``U`` uniform in (0, 1). This module fixes exactly
which uniform each (output, token) and (output, chunk) pair gets, so the
reference backend and the Triton kernels consume the same numbers and, for
the same inputs and seed, pick the same token.

Counter layout (Philox4x32-10, Salmon et al. 2011, the generator of
Random123, cuRAND and ``tl.philox``)::

    key     k0 = seed & 0xFFFFFFFF          k1 = (seed >> 32) & 0xFFFFFFFF
    counter c0 = token // 4                 c1 = stream
            c2 = offset & 0xFFFFFFFF        c3 = (offset >> 32) & 0xFFFFFFFF
    bits    r  = word (token % 4) of philox(counter, key)      (uint32)
    uniform U  = (r + 0.5) / 2**32                             in (0, 1)

Chunk ``c`` uses the same layout with ``c0 = 2**31 + c // 4`` and word
``c % 4`` (:func:`chunk_bits`). Top-p alone may make several draws
(docs/semantics.md section 5); draw ``q`` (0 to 15) adds ``q * 2**27`` to
``c0`` of its tokens and chunks. Token counters stay below ``2**27`` (rows of
up to ``2**29`` tokens), so no two (draw, token) or (draw, chunk) pairs share
a counter, and draw 0 is the layout above.

``seed`` and ``offset`` are the output's own (64-bit two's complement), and
``stream`` is the output position ``j`` when one seed is shared by the batch
(so rows differ) and 0 when every output has its own seed (so a row's token
does not depend on where it sits in the batch). With a single output the two
layouts coincide. One Philox call serves four consecutive tokens, which is
why ``c0`` is ``token // 4``.

Reachability: ``U`` has 32 bits, so ``E`` lies in
``[-log1p(-2**-33), 33 ln 2] = [1.16e-10, 22.9]``. A kept token can win only
if ``w_i / w_max > E_min / E_max ~= 5.1e-12``; tokens lighter than that are
never drawn. Above it the draw rate is exact up to the 2**-32 grid of ``U``:
a token of probability ``q`` is drawn at ``q * (1 + O(2**-32 / q))``, i.e.
within 0.1% relative for ``q >= 2.3e-7`` and within 1% for ``q >= 2.3e-8``.

Examples
--------
>>> import torch
>>> from tokensampler import rng
>>> z = torch.zeros(1, dtype=torch.int64)
>>> [hex(int(w)) for w in rng.philox4x32(z, z, z, z, z, z)]
['0x6627e8d5', '0xe169c58d', '0xbc57ac4c', '0x9b00dbd8']
"""

from __future__ import annotations

import torch

PHILOX_ROUNDS = 10
PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
TOKENS_PER_CALL = 4  # one Philox call gives four 32-bit words, one per token
CHUNK_TOKENS = 4096  # tokens per chunk of the two-stage race
# c0 of the chunk draws: token draws use c0 = token // 4 < 2**29, so the two
# never share a counter.
CHUNK_COUNTER = 1 << 31
# c0 of draw q adds q * DRAW_COUNTER; q < MAX_DRAWS keeps it below 2**31.
DRAW_COUNTER = 1 << 27
MAX_DRAWS = 16

_MASK32 = 0xFFFFFFFF


def _mulhilo(a: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32-bit words of ``a * m`` for ``a, m < 2**32``.

    int64 tensors cannot hold a 64-bit unsigned product without signed
    overflow, so the constant is split in 16-bit halves: both partial products
    stay below 2**48.
    """
    m_hi, m_lo = m >> 16, m & 0xFFFF
    p_lo = a * m_lo
    p_hi = a * m_hi
    hi = (p_hi + (p_lo >> 16)) >> 16
    lo = (((p_hi & 0xFFFF) << 16) + p_lo) & _MASK32
    return hi, lo


def philox4x32(c0, c1, c2, c3, k0, k1, rounds: int = PHILOX_ROUNDS):
    """Philox4x32 on int64 tensors holding uint32 values; returns four words.

    All arguments broadcast together. This is the textbook algorithm
    (Random123's ``philox4x32_R``), matching ``tl.philox`` bit for bit.
    """
    c0, c1, c2, c3 = (torch.as_tensor(c) & _MASK32 for c in (c0, c1, c2, c3))
    k0, k1 = torch.as_tensor(k0) & _MASK32, torch.as_tensor(k1) & _MASK32
    for _ in range(rounds):
        hi0, lo0 = _mulhilo(c0, PHILOX_M0)
        hi1, lo1 = _mulhilo(c2, PHILOX_M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + PHILOX_W0) & _MASK32
        k1 = (k1 + PHILOX_W1) & _MASK32
    return c0, c1, c2, c3


def split64(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Low and high uint32 words (as int64) of an int64 tensor's bit pattern."""
    return x & _MASK32, (x >> 32) & _MASK32


def token_bits(seed: torch.Tensor, offset: torch.Tensor, stream: torch.Tensor,
               tokens: torch.Tensor, draw: int = 0) -> torch.Tensor:
    """The 32 random bits of each (output, token) pair of draw ``draw``, as
    int64 in [0, 2**32).

    ``seed``, ``offset`` and ``stream`` are int64 of shape ``(N, 1)``;
    ``tokens`` is an int64 tensor of token ids broadcastable to ``(N, K)``.
    """
    k0, k1 = split64(seed)
    c2, c3 = split64(offset)
    words = philox4x32(draw * DRAW_COUNTER + tokens // TOKENS_PER_CALL, stream, c2, c3, k0, k1)
    lane = tokens % TOKENS_PER_CALL
    out = torch.where(lane == 0, words[0], words[1])
    out = torch.where(lane == 2, words[2], out)
    return torch.where(lane == 3, words[3], out)


def row_bits(seed: torch.Tensor, offset: torch.Tensor, stream: torch.Tensor,
             vocab: int, first_counter: int = 0, draw: int = 0) -> torch.Tensor:
    """Random bits for every token ``0 .. vocab-1`` of each output: ``(N, vocab)``.

    Same numbers as :func:`token_bits` over ``arange(vocab)``, with one Philox
    call per four tokens instead of one per token. ``first_counter`` shifts
    ``c0``: :func:`chunk_bits` uses it for the chunk draws.
    """
    groups = first_counter + draw * DRAW_COUNTER + torch.arange(
        (vocab + TOKENS_PER_CALL - 1) // TOKENS_PER_CALL, device=seed.device, dtype=torch.int64)
    k0, k1 = split64(seed)
    c2, c3 = split64(offset)
    words = philox4x32(groups, stream, c2, c3, k0, k1)
    return torch.stack(words, dim=-1).flatten(-2)[..., :vocab]


def chunk_bits(seed: torch.Tensor, offset: torch.Tensor, stream: torch.Tensor,
               n_chunks: int, draw: int = 0) -> torch.Tensor:
    """Random bits of chunks ``0 .. n_chunks-1`` of each output: ``(N, n_chunks)``.

    Chunk ``c`` takes word ``c % 4`` of the Philox call at ``c0 = 2**31 + c // 4``:
    the same layout as the tokens, moved to counters no token uses.
    """
    return row_bits(seed, offset, stream, n_chunks, first_counter=CHUNK_COUNTER, draw=draw)


def uniform(bits: torch.Tensor) -> torch.Tensor:
    """``U = (r + 0.5) / 2**32`` in float64 (exact: r needs 32 bits, U 33)."""
    return (bits.to(torch.float64) + 0.5) * 2.0**-32


def exponential(bits: torch.Tensor) -> torch.Tensor:
    """``E = -log(U)`` in float64, accurate over the whole range of ``U``.

    ``1 - U`` is exact in float64 for ``U >= 0.5``, so ``log1p`` keeps the
    small values of ``E`` (``U`` near 1) to full relative precision.
    """
    u = uniform(bits)
    return torch.where(u < 0.5, -torch.log(u), -torch.log1p(u - 1.0))
