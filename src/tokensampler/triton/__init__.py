"""The Triton backend: launchers for the kernels in :mod:`.kernels`.

Each launcher allocates its outputs (sizes depend on shapes only, never on
data), turns every parameter into a kernel argument and launches once, with
no host synchronisation, so every call can be captured in a CUDA graph.
On CPU tensors the same code runs under Triton's interpreter
(``TRITON_INTERPRET=1``), which is how CI tests it.
"""

from __future__ import annotations

import torch
import triton

from ..params import FilterCall, SamplingCall
from .kernels import filter_kernel, sample_kernel

name = "triton"


def _block(vocab: int) -> int:
    return max(16, min(1024, triton.next_power_of_2(vocab)))


def _warps(block: int) -> int:
    return 8 if block >= 1024 else 4


def _rows(x: torch.Tensor) -> torch.Tensor:
    # Kernels index columns contiguously; any row stride is fine.
    return x if x.stride(1) == 1 or x.shape[1] == 1 else x.contiguous()


def _param(value, dummy: torch.Tensor, default):
    """(pointer, scalar, per_row) kernel arguments for a normalised parameter."""
    if isinstance(value, torch.Tensor):
        return value, default, True
    return dummy, default if value is None else value, False


def sample(call: SamplingCall) -> tuple[torch.Tensor, torch.Tensor]:
    x = _rows(call.x)
    batch, vocab = x.shape
    n = call.num_outputs
    out = torch.empty(n, dtype=torch.int32, device=x.device)
    valid = torch.empty(n, dtype=torch.int8, device=x.device)
    if n == 0:
        return out, valid.bool()
    dummy = call.seed
    k_ptr, k_val, k_row = _param(call.top_k, dummy, 0)
    p_ptr, p_val, p_row = _param(call.top_p, dummy, 1.0)
    m_ptr, m_val, m_row = _param(call.min_p, dummy, 0.0)
    t_ptr, t_val, t_row = _param(call.temperature, dummy, 1.0)
    block = _block(vocab)
    sample_kernel[(n,)](
        x, x.stride(0), vocab, batch,
        call.indices if call.indices is not None else dummy, out, valid,
        call.seed, int(call.seed.shape[0] > 1), call.offset, int(call.offset.shape[0] > 1),
        k_ptr, k_val, p_ptr, p_val, m_ptr, m_val, t_ptr, t_val,
        HAS_INDICES=call.indices is not None, FROM_LOGITS=call.from_logits,
        HAS_K=call.top_k is not None, K_ROW=k_row, HAS_P=call.top_p is not None, P_ROW=p_row,
        HAS_MINP=call.min_p is not None, MINP_ROW=m_row, T_ROW=t_row, JOINT=call.joint,
        STREAM_IS_POS=not call.seed_per_output, BLOCK=block, num_warps=_warps(block))
    return out, valid.bool()


def _filter(call: FilterCall, mode: int, out_dtype) -> torch.Tensor:
    x = _rows(call.x)
    batch, vocab = x.shape
    out = torch.empty((batch, vocab), dtype=out_dtype, device=x.device)
    if batch == 0:
        return out
    dummy = torch.empty(1, dtype=torch.float32, device=x.device)
    k_ptr, k_val, k_row = _param(call.top_k, dummy, 0)
    p_ptr, p_val, p_row = _param(call.top_p, dummy, 1.0)
    t_ptr, t_val, t_row = _param(call.temperature, dummy, 1.0)
    block = _block(vocab)
    filter_kernel[(batch,)](
        x, x.stride(0), out, out.stride(0), vocab, k_ptr, k_val, p_ptr, p_val, t_ptr, t_val,
        MODE=mode, HAS_K=call.top_k is not None, K_ROW=k_row, HAS_P=call.top_p is not None,
        P_ROW=p_row, T_ROW=t_row, BLOCK=block, num_warps=_warps(block))
    return out


def renorm(call: FilterCall) -> torch.Tensor:
    return _filter(call, 0, torch.float32)


def mask_logits(call: FilterCall) -> torch.Tensor:
    return _filter(call, 1, call.x.dtype)


def softmax(call: FilterCall) -> torch.Tensor:
    return _filter(call, 2, torch.float32)
