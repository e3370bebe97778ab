"""Kernels that run one jitted helper alone, for tests that check it
directly (imported only where the Triton backend is usable)."""

import triton
import triton.language as tl

from tokensampler.triton import chunked


@triton.jit
def top_k_of_probe(cand_ptr, k_ptr, out_ptr, count, SIZE: tl.constexpr):
    """Program i: ``chunked._top_k_of`` over the ``count`` packed candidates
    at ``cand_ptr`` (as compact_kernel leaves them) with ``k = k_ptr[i]``;
    its mask to ``out_ptr[i, :count]`` (int8)."""
    i = tl.program_id(0)
    s = tl.arange(0, SIZE)
    live = s < count
    packed = tl.load(cand_ptr + s, mask=live, other=-9223372036854775808)
    key = (packed >> 32).to(tl.int32)
    idx = (0xFFFFFFFF - (packed & 0xFFFFFFFF)).to(tl.int32)
    keep = chunked._top_k_of(cand_ptr, tl.zeros([], tl.int64), count, key, idx, live,
                             tl.load(k_ptr + i), SIZE)
    tl.store(out_ptr + i * SIZE + s, keep.to(tl.int8), mask=live)
