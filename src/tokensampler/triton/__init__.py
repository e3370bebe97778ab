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
from . import chunked
from .kernels import filter_kernel

name = "triton"
CAP = 4096      # most candidate slots per row in the pruned top-k / top-p path
GROUP = 32      # tokens per group maximum


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


def _chunk(vocab: int) -> int:
    return max(GROUP, min(4096, triton.next_power_of_2(vocab)))


def sample(call: SamplingCall) -> tuple[torch.Tensor, torch.Tensor]:
    """Route by filter: plain (1 read), min-p (2 reads), top-k/top-p (2 reads + candidates).

    Workspaces are sized by shapes alone, so the call can be graph-captured.
    """
    x = _rows(call.x)
    batch, vocab = x.shape
    n = call.num_outputs
    dev = x.device
    out = torch.empty(n, dtype=torch.int32, device=dev)
    valid = torch.empty(n, dtype=torch.int8, device=dev)
    if n == 0:
        return out, valid.bool()
    dummy = call.seed
    k_ptr, k_val, k_row = _param(call.top_k, dummy, 0)
    p_ptr, p_val, p_row = _param(call.top_p, dummy, 1.0)
    m_ptr, m_val, m_row = _param(call.min_p, dummy, 0.0)
    t_ptr, t_val, t_row = _param(call.temperature, dummy, 1.0)
    chunk = _chunk(vocab)
    n_chunks = triton.cdiv(vocab, chunk)
    # Size-class constants: every V up to 262144 shares one compiled variant.
    cp2 = max(64, triton.next_power_of_2(n_chunks)) if n_chunks > 1 else 1
    warps = 8 if chunk >= 2048 else 4
    idx = call.indices if call.indices is not None else dummy
    seeds = (call.seed, int(call.seed.shape[0] > 1), call.offset, int(call.offset.shape[0] > 1))
    flags = dict(HAS_INDICES=call.indices is not None, FROM_LOGITS=call.from_logits, T_ROW=t_row)
    part_i = torch.empty(n * n_chunks * 6, dtype=torch.int32, device=dev)
    part_f = torch.empty(n * n_chunks * 3, dtype=torch.float32, device=dev)
    best_f = torch.empty(n * n_chunks, dtype=torch.float32, device=dev)
    best_i = torch.empty(n * n_chunks, dtype=torch.int32, device=dev)
    filtered = call.top_k is not None or call.top_p is not None
    g_per_chunk = chunk // GROUP
    gm = (torch.empty(n * n_chunks * g_per_chunk, dtype=torch.int32, device=dev) if filtered
          else part_i)
    grid = (n, n_chunks)
    plain = not filtered and call.min_p is None
    chunked.stats_kernel[grid](
        x, x.stride(0), vocab, batch, n_chunks, idx, t_ptr, t_val, part_i, part_f, gm, *seeds,
        best_f, best_i, WITH_GM=filtered, WITH_RACE=plain, STREAM_IS_POS=not call.seed_per_output,
        CHUNK=chunk, GROUP=GROUP, num_warps=warps, **flags)
    common = (x, x.stride(0), vocab, batch, n_chunks, idx)
    if not filtered:
        if not plain:
            chunked.race_kernel[grid](
                *common, m_ptr, m_val, t_ptr, t_val, part_i, part_f, *seeds, best_f, best_i,
                MINP_ROW=m_row, STREAM_IS_POS=not call.seed_per_output, CHUNK=chunk, CP2=cp2,
                num_warps=warps, **flags)
        chunked.final_kernel[(n,)](
            part_i, part_f, best_f, best_i, n_chunks, batch, idx, x.stride(0), m_ptr, m_val,
            t_ptr, t_val, out, valid, HAS_MINP=not plain, MINP_ROW=m_row, LOCAL_SCALE=plain,
            CP2=cp2, **flags)
        return out, valid.bool()
    cap = min(CAP, max(16, triton.next_power_of_2(vocab)))  # V <= cap never overflows
    plan = torch.empty(n, dtype=torch.int32, device=dev)
    count = torch.zeros(n, dtype=torch.int32, device=dev)
    cand = torch.empty(n * cap, dtype=torch.int64, device=dev)
    fk = dict(HAS_K=call.top_k is not None, K_ROW=k_row, HAS_P=call.top_p is not None,
              P_ROW=p_row, JOINT=call.joint, CP2=cp2)
    chunked.plan_kernel[(n,)](
        part_i, part_f, gm, plan, n_chunks, batch, idx, x.stride(0), k_ptr, k_val, p_ptr, p_val,
        t_ptr, t_val, GP2=cp2 * g_per_chunk,
        G_PER_CHUNK=g_per_chunk, num_warps=8, **fk, **flags)
    chunked.compact_kernel[grid](
        *common, plan, count, cand, HAS_INDICES=call.indices is not None,
        FROM_LOGITS=call.from_logits, CHUNK=chunk, CAP=cap, num_warps=warps)
    block = _block(vocab)
    chunked.select_kernel[(n,)](
        *common, part_i, part_f, plan, count, cand, *seeds, out, valid, k_ptr, k_val, p_ptr,
        p_val, m_ptr, m_val, t_ptr, t_val, HAS_MINP=call.min_p is not None, MINP_ROW=m_row,
        STREAM_IS_POS=not call.seed_per_output, CAP=cap, BLOCK=block, num_warps=8, **fk, **flags)
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
