"""The Triton backend: launchers for the kernels in :mod:`.kernels`.

Each launcher allocates its outputs (sizes depend on shapes only, never on
data), turns every parameter into a kernel argument and launches once, with
no host synchronisation, so every call can be captured in a CUDA graph.
On CPU tensors the same code runs under Triton's interpreter
(``TRITON_INTERPRET=1``), which is how CI tests it.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import torch

from ..rng import CHUNK_TOKENS
from ..params import FilterCall, SamplingCall
from . import chunked
from .bracket import hist_kernel, narrow_kernel
from ..reference import DRAWS, ROUNDS
from .kernels import filter_kernel
from .launcher import launch

name = "triton"
CAP = 4096      # most candidate slots per row in the pruned top-k / top-p path
GROUP = 32      # tokens per group maximum
HIST_PASSES = 3    # histogram passes that narrow a top-p bracket before compaction
HIST_BINS = 256    # bins per histogram pass (128 and 256 measured alike; 512 slower)
# Each per-row step (plan, narrow, select) runs in the last program of the
# launch before it up to this many outputs, and as a launch of its own above
# (ROCm: always a launch of its own, see _FUSE_OK). A fused step saves a
# launch's host time (25-50 us on the H100 machine's CPU), which is what
# small batches wait for; a step run by the last program of each row ends
# the launch with a tail, and it raises the launch's registers. Top-k 50 on
# an H200, V=128256 (benchmarks/RESULTS.md, ninth session): GPU time split
# 95 us at B=256 and 346 at B=1024; fused about 138 and 452 (measured with a
# grid order since reverted); but called eagerly, split took 241 us at B=256
# (host-bound: 4 launches), and fused took 197 at B=64, where the GPU needs
# far less. So up to B=256 the fused form should be the faster eagerly (not
# measured there: benchmarks/profile_fusion.py), and above it the GPU time
# decides. Under CUDA-graph replay the split form is the faster at any
# batch. Top-p alone by histograms (now ROCm's path) measured on an H100
# (v5), all three fused: at B=16 313 us against 856; at B=256 1082 against
# 861.
FUSE_ROWS = {"plan": 256, "narrow": 32, "select": 256, "draws": 32}
# "draws": top-p by rejection makes round 0's draws in the stats launch's
# tail up to this many outputs (host-bound: one launch fewer), and in a
# launch of their own, a program per (output, draw), above (GPU-bound: 333
# against 282 µs at B=256 on an H100, benchmarks/RESULTS.md, seventh session).
# A fused step relies on every store of a row's programs being visible to the
# last one after its arrival atomic. Compiled for sm_90 that holds (a barrier,
# then one thread's fence and atomic, which also empties the SM's L1). The
# code compiled for AMD (gfx942) lets each wave reach the barrier without
# waiting for its own stores, so on ROCm every step runs as a launch of its
# own until this is checked on MI hardware (independent review, fifth session).
_FUSE_OK = torch.version.hip is None
# Rounds after the first of top-p's rejection check (few rows still open):
# chunks a program reads, one after another (chunked.check_kernel).
CHECK_SPAN = 4
# Tests and benchmarks/bracket_stats.py set this to look at a call's
# workspaces (candidate counts, bracket states) after its launches.
inspect = None


def _pow2(n: int) -> int:
    """Smallest power of two >= n >= 1. Plain Python: newer Triton releases
    made ``triton.next_power_of_2`` a JIT function, slow to call on the host."""
    return 1 << (n - 1).bit_length()


def _block(vocab: int) -> int:
    return max(16, min(1024, _pow2(vocab)))


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


@functools.lru_cache(maxsize=None)
def _regs_per_sm(device: torch.device) -> int:
    return getattr(torch.cuda.get_device_properties(device), "regs_per_multiprocessor", 0)


def _reg_cap(x: torch.Tensor, programs: int, warps: int) -> dict:
    """Launch options that cap a streaming kernel's registers a thread so that
    ``programs`` programs of ``warps`` warps fit on one SM, from the device's
    registers per SM (none on the interpreter or where it is unknown). A
    kernel whose rare per-row tail (``decide_round``, ``plan_row``) needs
    more registers than its read otherwise gets them for every program, and
    the read slows down; capped, only the tail spills. Measured on an H100
    (benchmarks/RESULTS.md, seventh session): check launches 140 -> 105 µs
    at 64 registers, joint top-k + top-p 488 -> 261 µs at 80. ``maxnreg`` is
    an NVIDIA option; Triton's AMD backend ignores it."""
    regs = _regs_per_sm(x.device) if x.device.type == "cuda" else 0
    if not regs:
        return {}
    return dict(maxnreg=regs // (programs * warps * 32) // 8 * 8)


def _chunk(vocab: int) -> int:
    return max(GROUP, min(CHUNK_TOKENS, _pow2(vocab)))


def sample(call: SamplingCall) -> tuple[torch.Tensor, torch.Tensor]:
    """Route by filter: plain (1 read), min-p (2 reads), top-p alone (by
    rejection, 2 reads for most rows; on ROCm by histograms, 3 to
    2 + HIST_PASSES reads), top-k and joint (1 read + the groups holding
    candidates).

    Workspaces are sized by shapes alone, so the call can be graph-captured.
    """
    x = _rows(call.x)
    batch, vocab = x.shape
    n = call.num_outputs
    dev = x.device
    out = torch.empty(n, dtype=torch.int32, device=dev)
    valid = torch.empty(n, dtype=torch.bool, device=dev)
    if n == 0:
        return out, valid
    dummy = call.seed
    k_ptr, k_val, k_row = _param(call.top_k, dummy, 0)
    p_ptr, p_val, p_row = _param(call.top_p, dummy, 1.0)
    m_ptr, m_val, m_row = _param(call.min_p, dummy, 0.0)
    t_ptr, t_val, t_row = _param(call.temperature, dummy, 1.0)
    chunk = _chunk(vocab)
    n_chunks = -(-vocab // chunk)
    # The two-stage race (rng.py) cuts rows into chunks of CHUNK_TOKENS; a
    # shorter row is one chunk.
    assert n_chunks == 1 or chunk == CHUNK_TOKENS
    # Size-class constants: every V up to 262144 shares one compiled variant.
    cp2 = max(64, _pow2(n_chunks)) if n_chunks > 1 else 1
    warps = 8 if chunk >= 2048 else 4
    idx = call.indices if call.indices is not None else dummy
    seeds = (call.seed, int(call.seed.shape[0] > 1), call.offset, int(call.offset.shape[0] > 1))
    flags = dict(HAS_INDICES=call.indices is not None, FROM_LOGITS=call.from_logits, T_ROW=t_row)
    stream = dict(STREAM_IS_POS=not call.seed_per_output)
    grid = (n, n_chunks)
    common = (x, x.stride(0), vocab, batch, n_chunks, idx)
    fk = dict(HAS_K=call.top_k is not None, K_ROW=k_row, HAS_P=call.top_p is not None,
              P_ROW=p_row, JOINT=call.joint, CP2=cp2)
    if call.top_p is not None and call.top_k is None and call.min_p is None and _FUSE_OK:
        # (before the workspaces below: this path allocates its own)
        return _sample_top_p(call, x, out, valid, common, grid, seeds, p_ptr, p_val, p_row,
                             t_ptr, t_val, fk, flags, chunk, cp2, warps)
    filtered = call.top_k is not None or call.top_p is not None
    cap = min(CAP, max(16, _pow2(vocab)))  # V <= cap never overflows
    # Top-p alone keeps too many tokens to sort them all: a bracket around its
    # threshold is narrowed first, and the tokens above it are only summed.
    bracket = call.top_k is None and call.min_p is None and vocab > cap
    g_per_chunk = chunk // GROUP
    # plan_row's bisections run over every group maximum of a row, in lanes
    # of the size class (one compiled variant for every V up to 262144, as
    # warmup promises; a row-sized count, 4096 lanes at V=128256, would
    # compile a variant per power of two of chunks).
    gp2 = cp2 * g_per_chunk
    nc = n * n_chunks
    wi = SimpleNamespace(part=torch.empty(nc * 6, dtype=torch.int32, device=dev))
    wf = SimpleNamespace(part=torch.empty(nc * 3, dtype=torch.float32, device=dev))
    wi.gm = wi.plan = wi.gl = wi.st = wi.above = wf.ab = wi.arrived = dummy
    if filtered:
        # Zeroed per call: the arrival counters of the launches that end in
        # per-row work (stats -> plan_row, each histogram pass -> narrow_row,
        # compact -> select_row), compact's slot counter, the histogram bins.
        per_row = 3 + (HIST_PASSES * (1 + HIST_BINS) if bracket else 0)
        zeroed = torch.zeros(n * per_row, dtype=torch.int32, device=dev)
        arrived_stats, arrived_compact, wi.count = (zeroed[i * n:(i + 1) * n] for i in range(3))
        wi.arrived = zeroed[3 * n:(3 + HIST_PASSES) * n]
        wi.hist = zeroed[(3 + HIST_PASSES) * n:]
        wi.gm = torch.empty(nc * g_per_chunk, dtype=torch.int32, device=dev)
        wi.plan = torch.empty(n * 4, dtype=torch.int32, device=dev)
    if filtered and not bracket:
        # Top-k and joint: each row's list of the groups holding candidates.
        wi.gl = torch.empty(nc * g_per_chunk, dtype=torch.int32, device=dev)
    if call.min_p is not None:
        wf.mass = torch.empty(nc, dtype=torch.float32, device=dev)
    wf.above = wf.part
    if bracket:
        # Per pass: bracket states and mass above per chunk; then the count
        # above the final bracket per chunk (compact_kernel).
        wi.st = torch.empty(n * HIST_PASSES * 4 + nc, dtype=torch.int32, device=dev)
        wi.above = wi.st[n * HIST_PASSES * 4:]
        wf.ab = torch.empty(nc * (HIST_PASSES + 1), dtype=torch.float32, device=dev)
        wf.above = wf.ab[nc * HIST_PASSES:]
    hist = dict(NS=HIST_PASSES, NB=HIST_BINS)
    fuse = {step: _FUSE_OK and filtered and n <= rows for step, rows in FUSE_ROWS.items()}
    # Top-k and joint: plan_row and select_row are the rare-heavy tails of
    # these two launches (three programs an SM, seventh session).
    regs = _reg_cap(x, 3, warps) if filtered and not bracket else {}
    launch(chunked.stats_kernel, grid,
           *common, t_ptr, t_val, wi.part, wf.part, wi.gm, wi.plan, wi.gl, k_ptr, k_val, p_ptr,
           p_val, wi.st, arrived_stats if filtered else dummy, *seeds, out, valid, WITH_GM=filtered,
           CHUNK=chunk, GROUP=GROUP, PLAN=fuse["plan"], GP2=gp2, BRACKET=bracket,
           NS=HIST_PASSES, REJECT=False, DRAWS=DRAWS, num_warps=warps if filtered else 4, **fk,
           **stream, **flags, **regs)   # measured best
    if not filtered:
        if call.min_p is None:
            mass, step = wf.part[2:], 3   # each chunk's whole mass, from stats
        else:
            mass, step = wf.mass, 1
            launch(chunked.min_p_mass_kernel, grid,
                   *common, m_ptr, m_val, t_ptr, t_val, wi.part, wf.part, mass, MINP_ROW=m_row,
                   CHUNK=chunk, CP2=cp2, num_warps=warps, **flags)
        launch(chunked.final_kernel, (n,),
               *common, wi.part, wf.part, mass, step, *seeds, m_ptr, m_val, t_ptr, t_val, out,
               valid, HAS_MINP=call.min_p is not None, MINP_ROW=m_row, CHUNK=chunk, CP2=cp2,
               num_warps=warps, **stream, **flags)
        return out, valid
    if not fuse["plan"]:   # (plain and min-p returned above)
        launch(chunked.plan_kernel, (n,),
               wi.part, wf.part, wi.gm, wi.plan, wi.gl, n_chunks, batch, idx, x.stride(0), k_ptr,
               k_val, p_ptr, p_val, t_ptr, t_val, wi.st, GP2=gp2, G_PER_CHUNK=g_per_chunk,
               BRACKET=bracket, NS=HIST_PASSES, num_warps=warps, **fk, **flags)
    cand = torch.empty(n * cap, dtype=torch.int64, device=dev)
    if bracket:
        # Rows whose bracket already fits return at once. The narrowing runs
        # once per row, not in every chunk's program (that cost more than a
        # launch, measured on an H200).
        for k in range(HIST_PASSES):
            launch(hist_kernel, grid,
                   *common, p_ptr, p_val, t_ptr, t_val, wi.part, wf.part, wi.plan, wi.st, wi.hist,
                   wf.ab, wi.arrived, k, P_ROW=p_row, CHUNK=chunk, CP2=cp2, CAP=cap,
                   NARROW=fuse["narrow"], num_warps=warps, **hist, **flags)
            if not fuse["narrow"]:
                # The warps of the fused form: the same reduction order, so
                # a row's bracket, and token, do not depend on the batch size.
                launch(narrow_kernel, (n,),
                       wi.part, wf.part, wi.plan, wi.st, wi.hist, wf.ab, k, n_chunks, batch, idx,
                       x.stride(0), p_ptr, p_val, t_ptr, t_val, P_ROW=p_row, CP2=cp2, CAP=cap,
                       num_warps=warps, **hist, **flags)
    sel = (*seeds, out, valid, k_ptr, k_val, p_ptr, p_val, m_ptr, m_val, t_ptr, t_val)
    sel_kw = dict(HAS_MINP=call.min_p is not None, MINP_ROW=m_row, CAP=cap, BLOCK=_block(vocab),
                  CHUNK=chunk, BRACKET=bracket, **stream, **fk, **flags)
    launch(chunked.compact_kernel, grid,
           *common, wi.part, wf.part, wi.gm, wi.plan, wi.gl, wi.count, cand, wf.above, wi.above,
           arrived_compact, *sel, GROUP=GROUP, SELECT=fuse["select"], num_warps=warps, **sel_kw,
           **regs)
    if not fuse["select"]:
        launch(chunked.select_kernel, (n,),
               *common, wi.part, wf.part, wi.plan, wi.count, cand, wf.above, wi.above, *sel,
               num_warps=warps, **sel_kw)
    if inspect is not None:
        passes = None
        if bracket:   # histogram passes that counted each row (its bracket state was active)
            st = wi.st[: n * HIST_PASSES * 4].view(n, HIST_PASSES, 4)
            passes = ((st[..., 0] < st[..., 1]) & (st[..., 2] > cap)).sum(1)
        inspect(SimpleNamespace(n=n, cap=cap, bracket=bracket, count=wi.count, st=wi.st,
                                passes=passes, part_i=wi.part, part_f=wf.part, gm=wi.gm,
                                plan=wi.plan, gl=wi.gl, cand=cand))
    return out, valid


def _sample_top_p(call, x, out, valid, common, grid, seeds, p_ptr, p_val, p_row, t_ptr, t_val,
                  fk, flags, chunk, cp2, warps):
    """Top-p alone by adaptive rejection (docs/semantics.md section 5): the
    stats pass, round 0's draws (in its tail up to FUSE_ROWS["draws"]
    outputs, else ``draw_kernel``); each of ROUNDS ``check_kernel`` launches
    reads the rows still open once, checks their draws and makes the next
    round's. 1 + ROUNDS or 2 + ROUNDS launches and a memset; a row decided in
    round 0 is read twice."""
    n = call.num_outputs
    dev = x.device
    nc = n * grid[1]
    part_i = torch.empty(nc * 6, dtype=torch.int32, device=dev)
    part_f = torch.empty(nc * 3, dtype=torch.float32, device=dev)
    # Zeroed per call: one arrival counter per row for each launch.
    arrived = torch.zeros((1 + ROUNDS) * n, dtype=torch.int32, device=dev)
    draws = torch.empty(n * 2 * DRAWS, dtype=torch.int32, device=dev)   # tokens, keys
    state = torch.empty(n, dtype=torch.int32, device=dev)
    sums = torch.empty(nc * DRAWS, dtype=torch.float32, device=dev)
    stream = dict(STREAM_IS_POS=not call.seed_per_output)
    fused = n <= FUSE_ROWS["draws"]
    # 4 warps: plain sampling's stats launch, the same code without the tail
    # (84 µs there against 91 at 8 warps here, B=256, H100, two runs). Both
    # forms must use the same warps: the chunk masses' summation order, and
    # so the draws, depend on it.
    launch(chunked.stats_kernel, grid,
           *common, t_ptr, t_val, part_i, part_f, draws, draws, draws, p_ptr, p_val, p_ptr, p_val,
           state, arrived, *seeds, out, valid, WITH_GM=False, CHUNK=chunk, GROUP=GROUP,
           PLAN=fused, GP2=cp2, BRACKET=False, NS=HIST_PASSES, REJECT=True, DRAWS=DRAWS,
           num_warps=4, **fk, **stream, **flags)
    if not fused:
        launch(chunked.draw_kernel, (n, DRAWS),
               *common, part_i, part_f, draws, state, *seeds, out, valid, p_ptr, p_val, t_ptr,
               t_val, P_ROW=p_row, CP2=cp2, CHUNK=chunk, DRAWS=DRAWS,
               num_warps=_warps(min(chunk, 1024)), **stream, **flags)
    # Four programs an SM: the decision tail (rare past round 0) spills.
    regs = _reg_cap(x, 4, warps)
    for k in range(ROUNDS):
        span = 1 if k == 0 else CHECK_SPAN
        launch(chunked.check_kernel, (n, -(-grid[1] // span)),
               *common, part_i, part_f, draws, state, sums, arrived[(1 + k) * n:], k, *seeds,
               out, valid, p_ptr, p_val, t_ptr, t_val, P_ROW=p_row, CP2=cp2, CHUNK=chunk,
               BLOCK=_block(x.shape[1]), DRAWS=DRAWS, ROUNDS=ROUNDS, FIRST=k == 0, SPAN=span,
               num_warps=warps, **stream, **flags, **regs)
    if inspect is not None:
        inspect(SimpleNamespace(n=n, reject=True, state=state))
    return out, valid


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
    launch(filter_kernel, (batch,),
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
