"""The Triton backend: launchers for the kernels in :mod:`.kernels`.

Each launcher allocates its outputs (sizes depend on shapes only, never on
data), turns every parameter into a kernel argument and launches once, with
no host synchronisation, so every call can be captured in a CUDA graph.
On CPU tensors the same code runs under Triton's interpreter
(``TRITON_INTERPRET=1``), which is how CI tests it.
"""

from __future__ import annotations

import contextlib
import functools
from types import SimpleNamespace

import torch

from ..rng import CHUNK_TOKENS
from ..params import FilterCall, SamplingCall
from . import chunked
from .bracket import hist_kernel, narrow_kernel
from ..reference import DRAWS, ROUNDS
from .kernels import filter_kernel
from . import launcher, workspace
from .launcher import launch, launch_with

name = "triton"
CAP = 4096      # most candidate slots per row in the pruned top-k / top-p path
GROUP = 32      # tokens per group maximum (fewer for a large scalar top_k: _group)
MIN_GROUP = 8
PLAN_LANES = 8192   # most group maxima plan_row holds in registers
HIST_PASSES = 3    # histogram passes that narrow a top-p bracket before compaction
HIST_BINS = 256    # bins per histogram pass (128 and 256 measured alike; 512 slower)
# Each per-row step (plan, narrow, select, top-p's round-0 draws) runs in
# the last program of the launch before it up to this many outputs, and as a
# launch of its own above (ROCm: always a launch of its own, see _FUSE_OK).
# A fused step saves a launch's host time; a step run by the last program of
# each row ends the launch with a serial tail and raises its registers.
# Since launches skip Triton's argument binding (launcher.py), a launch costs
# about 10 µs of host time on the H200 machine's CPU, not 25-50, so the tails
# now cost more than they save (benchmarks/RESULTS.md, tenth session; H200,
# V=128256, GPU time under graph replay): top-p 0.9 with its draws in the
# stats tail took 114-121 µs at B=1-16 against 55 split at B=64 (a row's
# last program read 4 chunks one after another), so "draws" never fuses;
# top-k 50 fused took 142 µs at B=256 against 95 split (ninth session), so
# plan and select fuse only up to 64 outputs, where the host still decides.
FUSE_ROWS = {"plan": 64, "narrow": 32, "select": 64, "draws": 0, "round0": 384}
# "draws": top-p by rejection makes round 0's draws in the stats launch's
# tail up to this many outputs, and in a launch of their own, a program per
# (output, draw), above.
# "round0": top-p by rejection checks round 0's draws in one launch up to
# this many outputs; above, draw 0 alone first, and the others only for the
# rows that reject it (chunked.check_kernel). Measured on an H200 at
# V=128256, top-p 0.9, N(0,1) (twentieth session): at B=1024 one launch for
# all took 533 µs, draw 0 first 443; at B=256, 146 against 160 (the rows
# that reject draw 0 take a latency-bound launch of their own). Both forms
# by batch (benchmarks/profile_fusion.py, GPU µs): at 256 141.5 at once
# against 159.8, at 512 266.4 against 246.4 draw 0 first. 384 lies between
# those two; it was not measured itself.
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
# Round 0 of the rejection rounds for the rows of a per-request top-k call
# whose top-k is off (_rejection_kw, gated): chunks a program reads. With
# 1, a batch with no such row pays 23 µs for round 0's empty programs at
# B=1024, V=128256 (H200, eighteenth session); larger spans launch fewer.
GATED_SPAN = 1
# Tests and benchmarks/bracket_stats.py set this to look at a call's
# workspaces (candidate counts, bracket states) after its launches. They are
# views of a buffer the next call on this thread and stream overwrites
# (workspace.py): read or clone them before making another call.
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


def _reg_cap(device: torch.device, programs: int, warps: int) -> dict:
    """Launch options that cap a streaming kernel's registers a thread so that
    ``programs`` programs of ``warps`` warps fit on one SM, from the device's
    registers per SM (none on the interpreter or where it is unknown). A
    kernel whose rare per-row tail (``decide_round``, ``plan_row``) needs
    more registers than its read otherwise gets them for every program, and
    the read slows down; capped, only the tail spills. Measured on an H100
    (benchmarks/RESULTS.md, seventh session): check launches 140 -> 105 µs
    at 64 registers, joint top-k + top-p 488 -> 261 µs at 80. ``maxnreg`` is
    an NVIDIA option; Triton's AMD backend ignores it."""
    regs = _regs_per_sm(device) if device.type == "cuda" else 0
    if not regs:
        return {}
    return dict(maxnreg=regs // (programs * warps * 32) // 8 * 8)


def _plain_stats_options(device: torch.device, warps: int) -> dict:
    """Launch options of the stats pass without top-k (plain sampling, min-p,
    top-p alone): ``warps`` warps (8 for 4096-token chunks) capped for four
    programs an SM. At 4 warps uncapped a thread held 32 tokens and 166
    registers, three programs an SM, and the pass read at 66% of DRAM's
    rate where a torch row sum reached 89% (Nsight Compute, H200,
    nineteenth session). 8 warps capped at 64 registers: 168.5 -> 153.7 µs
    at B=1024, V=128256 and 329 -> 301 at V=262144; 8 warps uncapped (78
    registers) 174 and 16 warps 271 were slower (benchmarks/stats_variants.py)."""
    return dict(num_warps=warps, **_reg_cap(device, 4, warps))


def _aligned(n: int) -> int:
    """``n`` rounded up to a multiple of 4 entries (int32 or float32): where
    a workspace slice starts there, its pointer is 16-byte aligned whatever
    the batch. Triton specialises pointers on 16-byte alignment, so slices
    at ``n`` entries compiled a variant per ``n mod 4`` of the batch: a
    warmed server still compiled compact_kernel (select_row: 25 s for sm_90)
    at its first batch of 1, 4 or 16 (independent review, eleventh session)."""
    return (n + 3) // 4 * 4


def _chunk(vocab: int) -> int:
    return max(GROUP, min(CHUNK_TOKENS, _pow2(vocab)))


def _group(vocab: int, top_k) -> int:
    """Tokens per group maximum for a call: GROUP, halved (down to MIN_GROUP)
    while a scalar ``top_k`` would make more than CAP / 2 candidates.

    plan_row's bound is the k-th largest group maximum, so every token of
    the k groups reaching it that is above it is a candidate. For iid
    weights, with q = k / (V / g) of the groups reaching the bound, that is
    ``V * (1 - (1 - q) ** (1 / g))`` tokens (:func:`_expected_candidates`):
    with k near the number of groups, nearly the whole row. Top-k 1000 at
    V=32000 (1000 groups of 32) overflowed the 4096 slots in every row and
    went to the single-program path: 555 µs at B=1 against FlashInfer's 14
    (H200, twelfth session). Groups of 16 expect 1362 candidates. Smaller
    groups cost a longer plan (more lanes) and more group maxima to write,
    so a group is halved only where the count needs it (top-k 1000 at
    V=128256 keeps 32: 1145 expected). A per-request top_k tensor keeps
    GROUP: its values are not known on the host. The plan's lanes (a power
    of two of chunks times the groups a chunk) stay within PLAN_LANES."""
    if type(top_k) is not int or top_k <= 0 or top_k >= vocab:
        return GROUP
    return _group_for(vocab, top_k)


@functools.lru_cache(maxsize=1024)
def _group_for(vocab: int, top_k: int) -> int:
    """:func:`_group` for an int top_k, worked out once per (vocab, k): it
    runs on every call."""
    chunk = _chunk(vocab)
    lanes = _pow2(-(-vocab // chunk)) * chunk
    group = GROUP
    while (group > MIN_GROUP and _expected_candidates(vocab, top_k, group) > CAP // 2
           and lanes // (group // 2) <= PLAN_LANES):
        group //= 2
    return group


def _expected_candidates(vocab: int, k: int, group: int) -> float:
    """Tokens at or above the k-th largest of the row's group maxima, for iid
    weights (the k groups reaching it hold them)."""
    q = min(1.0, k / (vocab // group or 1))
    return vocab * (1.0 - (1.0 - q) ** (1.0 / group))


def _spec(value):
    """A parameter's part of a call's key: absent, a number of this type, or
    a tensor of this dtype, 16-byte alignment and length."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):   # (subclasses too: an nn.Parameter)
        return value.dtype, value.data_ptr() & 15, value.shape[0]
    # An int (top_k) is specialised on == 1 and on divisibility by 16.
    return (value == 1, value % 16 == 0) if type(value) is int else type(value)


def warm_batches() -> tuple[int, ...]:
    """Numbers of outputs that between them reach every launch form, for
    ``tokensampler.warmup``: 2 (each per-row step fused where it may) and
    one past each FUSE_ROWS threshold (that step as a launch of its own).
    Each form is its own compiled variant, so a server warmed at batch 2
    alone compiled for about a minute at its first request above 64 rows.
    "narrow" serves only ROCm's top-p path, where no step fuses."""
    if not _FUSE_OK:
        return (2,)
    return tuple(sorted({2} | {rows + 1 for step, rows in FUSE_ROWS.items()
                               if rows > 0 and step != "narrow"}))


def precompile(make_calls, threads: int) -> int:
    """Compile, ``threads`` at a time, every kernel variant that the calls
    ``make_calls()`` makes would launch, without launching them (warmup's
    first pass); returns the number of distinct launches compiled."""
    launches = []
    with launcher.collecting(launches):
        make_calls()
    return launcher.compile_all(launches, threads)


def sample(call: SamplingCall) -> tuple[torch.Tensor, torch.Tensor]:
    """Route by filter: plain (1 read), min-p (2 reads), top-p alone (by
    rejection, 2 reads for most rows; on ROCm by histograms, 3 to
    2 + HIST_PASSES reads), top-k and joint (1 read + the groups holding
    candidates).

    Workspaces are sized by shapes alone, so the call can be graph-captured.
    Everything the launches need that follows from the shapes and from which
    parameters are given is worked out once per such combination
    (:func:`_layout`), since small batches wait for this host time.
    """
    try:
        with _device_of(call.x):
            result = _sample(call)
        launcher.finish()   # every launch made: the key's next call may be ready
        return result
    finally:
        launcher.plan(None)   # launches after this call are not its own


_same_device = contextlib.nullcontext()


def _device_of(x: torch.Tensor):
    """The input's GPU made current for the call, where it is not already:
    Triton launches on the current device's stream, and torch's memsets on
    the tensor's (independent review, twelfth session: an input on cuda:1
    with cuda:0 current had them on two devices)."""
    dev = x.device
    if dev.type != "cuda" or dev.index == torch.cuda.current_device():
        return _same_device
    return torch.cuda.device(dev)


def _sample(call: SamplingCall) -> tuple[torch.Tensor, torch.Tensor]:
    """The body of :func:`sample`."""
    x = _rows(call.x)
    batch, vocab = x.shape
    n = call.num_outputs
    dev = x.device
    out = torch.empty(n, dtype=torch.int32, device=dev)
    # Where the caller does not want the flags, the kernels write them into
    # the workspace (a torch.empty less: 4.6 µs of host time on the H200
    # machine, thirteenth session).
    valid = torch.empty(n, dtype=torch.bool, device=dev) if call.want_valid else None
    if n == 0:
        return out, valid
    top_k, top_p, min_p, temp = call.top_k, call.top_p, call.min_p, call.temperature
    specs = (_spec(call.indices), _spec(top_k), _spec(top_p), _spec(min_p), _spec(temp),
             _spec(call.seed), _spec(call.offset))
    L = _layout(batch, vocab, n, dev, call.from_logits, call.joint, call.seed_per_output,
                *specs[:5], _group(vocab, top_k), tuple(FUSE_ROWS.values()), _FUSE_OK,
                CHECK_SPAN, GATED_SPAN)
    stride = x.stride(0)
    stream = None
    if dev.type == "cuda":
        launcher.plan(_key(L, x, specs), complete=True)
        stream = launcher.current_stream()
    # A ready call's launches take addresses (launcher.ready), not tensors.
    addresses = inspect is None and launcher.ready()
    carve = _carve_top_p if L.top_p_alone else _carve
    w = workspace.get(L, carve, dev, stream, addresses)
    dummy = call.seed
    k_ptr, k_val, _ = _param(top_k, dummy, 0)
    p_ptr, p_val, _ = _param(top_p, dummy, 1.0)
    m_ptr, m_val, _ = _param(min_p, dummy, 0.0)
    t_ptr, t_val, _ = _param(temp, dummy, 1.0)
    idx = call.indices if call.indices is not None else dummy
    seed, offset, x_arg = call.seed, call.offset, x
    out_arg, valid_arg = out, (valid if valid is not None else w.valid)
    if addresses:
        x_arg, out_arg, seed, offset, idx, k_ptr, p_ptr, m_ptr, t_ptr = (
            t.data_ptr() for t in (x, out, seed, offset, idx, k_ptr, p_ptr, m_ptr, t_ptr))
        if valid is not None:
            valid_arg = valid.data_ptr()
    seeds = (seed, int(call.seed.shape[0] > 1), offset, int(call.offset.shape[0] > 1))
    common = (x_arg, stride, vocab, batch, L.n_chunks, idx)
    try:
        if L.top_p_alone:
            _sample_top_p(L, w, n, out_arg, valid_arg, common, seeds, p_ptr, p_val, t_ptr,
                          t_val)
            return out, valid
        launch_with(chunked.stats_kernel, L.grid,
                    (*common, t_ptr, t_val, w.part_i, w.part_f, w.gm, w.plan, w.gl, k_ptr, k_val,
                     p_ptr, p_val, w.st, w.arrived, *seeds, out_arg, valid_arg), L.stats_kw)
        if not L.filtered:
            if min_p is not None:
                launch_with(chunked.min_p_mass_kernel, L.grid,
                            (*common, m_ptr, m_val, t_ptr, t_val, w.part_i, w.part_f, w.mass),
                            L.min_p_kw)
            launch_with(chunked.final_kernel, (n,),
                        (*common, w.part_i, w.part_f, w.mass, L.mass_step, *seeds, m_ptr, m_val,
                         t_ptr, t_val, out_arg, valid_arg), L.final_kw)
            return out, valid
        if not L.fuse["plan"]:   # (plain and min-p returned above)
            launch_with(chunked.plan_kernel, (n,),
                        (w.part_i, w.part_f, w.gm, w.plan, w.gl, vocab, L.n_chunks, batch, idx,
                         stride, k_ptr, k_val, p_ptr, p_val, t_ptr, t_val, w.st), L.plan_kw)
        if L.bracket:
            # Rows whose bracket already fits return at once. The narrowing runs
            # once per row, not in every chunk's program (that cost more than a
            # launch, measured on an H200).
            for k in range(HIST_PASSES):
                launch_with(hist_kernel, L.grid,
                            (*common, p_ptr, p_val, t_ptr, t_val, w.part_i, w.part_f, w.plan,
                             w.st, w.hist, w.ab, w.arrived, k), L.hist_kw)
                if not L.fuse["narrow"]:
                    # The warps of the fused form: the same reduction order, so
                    # a row's bracket, and token, do not depend on the batch size.
                    launch_with(narrow_kernel, (n,),
                                (w.part_i, w.part_f, w.plan, w.st, w.hist, w.ab, k, L.n_chunks,
                                 batch, idx, stride, p_ptr, p_val, t_ptr, t_val), L.narrow_kw)
        sel = (*seeds, out_arg, valid_arg, k_ptr, k_val, p_ptr, p_val, m_ptr, m_val, t_ptr,
               t_val)
        launch_with(chunked.compact_kernel, L.grid,
                    (*common, w.part_i, w.part_f, w.gm, w.plan, w.gl, w.cand, w.above,
                     w.n_above, w.arrived, *sel), L.compact_kw)
        if not L.fuse["select"]:
            launch_with(chunked.select_kernel, (n,),
                        (*common, w.part_i, w.part_f, w.plan, w.cand, w.above, w.n_above, *sel),
                        L.select_kw)
        if L.mixed:
            # The outputs whose top-k is off (plan_row opened them): top-p
            # alone, by rejection from the stats above.
            _rejection_rounds(L, w, n, True, out_arg, valid_arg, common, seeds, p_ptr, p_val,
                              t_ptr, t_val)
        if inspect is not None:
            passes = None
            if L.bracket:   # histogram passes that counted each row (its bracket state was active)
                st = w.st[: n * HIST_PASSES * 4].view(n, HIST_PASSES, 4)
                passes = ((st[..., 0] < st[..., 1]) & (st[..., 2] > L.cap)).sum(1)
            count = w.plan[:n * 4].view(n, 4)[:, 3]
            inspect(SimpleNamespace(n=n, cap=L.cap, bracket=L.bracket, count=count, st=w.st,
                                    passes=passes, part_i=w.part_i, part_f=w.part_f, gm=w.gm,
                                    plan=w.plan, gl=w.gl, cand=w.cand))
        return out, valid
    except BaseException:
        # A call stopped between its launches (a compile error at a kernel's
        # first use, an interrupt) may leave counters that are not zero.
        workspace.discard(dev, stream)
        raise


def _key(L, x: torch.Tensor, specs: tuple) -> tuple:
    """The launcher's key for a call (launcher.plan): with the layout and the
    parameters' specs, the input's dtype, its alignment and its row
    stride's int class fix the type and the specialisation of every
    argument of every launch on CUDA (the workspaces are the layout's own
    views, the outputs fresh and aligned). On ROCm Triton may also
    specialise on a tensor's storage size, so direct launches are off there
    by default (launcher.DIRECT)."""
    return L, x.dtype, x.data_ptr() & 15, launcher.int_class(x.stride(0)), *specs


def _carve(L, alloc, zeros) -> SimpleNamespace:
    """The workspaces of a layout's launches (plain, min-p, top-k, joint, the
    histogram bracket), from ``alloc(numel, dtype)``, and the counters from
    ``zeros(numel)``, zero at rest (workspace.py); workspace.get keeps them
    for the next call with this layout. A workspace a launch does not use is
    a 4-entry stand-in."""
    n, nc = L.n, L.nc
    w = SimpleNamespace()
    w.valid = alloc(n, torch.bool)   # the flags of a call that does not return them
    w.part_i = alloc(nc * 6, torch.int32)
    w.part_f = alloc(nc * 3, torch.float32)
    w.gm = w.plan = w.gl = w.st = w.n_above = w.hist = w.arrived = w.ab = alloc(4, torch.int32)
    w.above = w.mass = w.part_f
    if L.filtered:
        # The arrival counters of the launches that end in per-row work
        # (stats -> plan_row, compact -> select_row: entry j; histogram pass
        # k -> narrow_row: entry j * NS + k), one set for all of them: each
        # launch leaves it at zero before the next starts (chunked.arrive).
        # The histogram bins: narrow_row zeroes those it read.
        w.arrived = zeros(n * (HIST_PASSES if L.bracket else 1))
        if L.bracket:
            w.hist = zeros(n * HIST_PASSES * HIST_BINS)
        w.gm = alloc(nc * L.g_per_chunk, torch.int32)
        # (lo, hi, groups, candidate count) a row, from plan_row.
        w.plan = alloc(n * 4, torch.int32)
        w.cand = alloc(n * L.cap, torch.int64)
        if not L.bracket:
            # Top-k and joint: each row's list of the groups holding candidates.
            w.gl = alloc(nc * L.g_per_chunk, torch.int32)
        else:
            # Per pass: bracket states and mass above per chunk; then the count
            # above the final bracket per chunk (compact_kernel).
            w.st = alloc(n * HIST_PASSES * 4 + nc, torch.int32)
            w.n_above = w.st[n * HIST_PASSES * 4:]
            w.ab = alloc(_aligned(nc * HIST_PASSES) + nc, torch.float32)
            w.above = w.ab[_aligned(nc * HIST_PASSES):]
        if L.mixed:   # (never with the bracket: it is top-p alone's)
            # Top-p alone by rejection for the outputs whose top-k is off,
            # as _carve_top_p: each output's state (plan_row), draws and
            # per-chunk sums.
            w.st = alloc(n, torch.int32)
            w.draws = alloc(n * 2 * DRAWS, torch.int32)
            w.sums = alloc(nc * DRAWS, torch.float32)
    elif L.has_min_p:
        w.mass = alloc(nc, torch.float32)   # kept mass per chunk (min_p_mass_kernel)
    else:
        w.mass = w.part_f[2:]   # each chunk's whole mass, from stats (every third entry)
    return w


def _carve_top_p(L, alloc, zeros) -> SimpleNamespace:
    """Top-p by rejection's workspaces (:func:`_sample_top_p`), as :func:`_carve`."""
    n, nc = L.n, L.nc
    w = SimpleNamespace(part_i=alloc(nc * 6, torch.int32), part_f=alloc(nc * 3, torch.float32),
                        valid=alloc(n, torch.bool))
    # One arrival counter a row, for the stats launch and each check round
    # in turn: each leaves it at zero (chunked.arrive).
    w.arrived = zeros(n)
    w.draws = alloc(n * 2 * DRAWS, torch.int32)   # tokens, keys
    w.st = alloc(n, torch.int32)   # each output's state (chunked.first_draws)
    w.sums = alloc(nc * DRAWS, torch.float32)
    return w


def _per_row(spec) -> bool:
    return type(spec) is tuple and isinstance(spec[0], torch.dtype)


class _Layout(SimpleNamespace):
    # Part of the launcher's key (launcher.plan): equal only to itself.
    __eq__ = object.__eq__
    __hash__ = object.__hash__


@functools.lru_cache(maxsize=512)
def _layout(batch, vocab, n, device, from_logits, joint, seed_per_output, idx, top_k, top_p,
            min_p, temp, group, fuse_rows, fuse_ok, check_span, gated_span) -> SimpleNamespace:
    """What a call's launches need that follows from its shapes and from
    which parameters it has (absent, a number, a tensor): grids, workspace
    sizes, compile-time arguments. The tuning knobs that tests and
    benchmarks change (FUSE_ROWS, _FUSE_OK, CHECK_SPAN, GATED_SPAN) are
    arguments, so changing them gives a new layout; the other module constants (CAP,
    GROUP, HIST_*) are read once: call ``_layout.cache_clear()`` after
    changing one."""
    L = _Layout()
    L.n = n
    L.k_row, L.p_row = _per_row(top_k), _per_row(top_p)
    L.m_row, L.t_row = _per_row(min_p), _per_row(temp)
    chunk = _chunk(vocab)
    L.n_chunks = n_chunks = -(-vocab // chunk)
    # The two-stage race (rng.py) cuts rows into chunks of CHUNK_TOKENS; a
    # shorter row is one chunk.
    assert n_chunks == 1 or chunk == CHUNK_TOKENS
    # The chunk statistics take lanes of a size class (every V up to 262144
    # shares them); the plan's lanes follow the row (gp2 below).
    cp2 = max(64, _pow2(n_chunks)) if n_chunks > 1 else 1
    warps = 8 if chunk >= 2048 else 4
    L.grid = (n, n_chunks)
    L.nc = n * n_chunks
    flags = dict(HAS_INDICES=idx is not None, FROM_LOGITS=from_logits, T_ROW=L.t_row)
    stream = dict(STREAM_IS_POS=not seed_per_output)
    fk = dict(HAS_K=top_k is not None, K_ROW=L.k_row, HAS_P=top_p is not None, P_ROW=L.p_row,
              JOINT=joint, CP2=cp2)
    fuse_rows = dict(zip(FUSE_ROWS, fuse_rows))
    # Top-p alone by rejection has workspaces of its own (_carve_top_p).
    L.top_p_alone = top_p is not None and top_k is None and min_p is None and fuse_ok
    if L.top_p_alone:
        L.fused_draws = n <= fuse_rows["draws"]
        # (The stats tail makes all four draws: draw 0 first is for larger batches.)
        L.draw0_first = n > fuse_rows["round0"] and not L.fused_draws
        # As plain sampling's stats launch (_plain_stats_options). Both forms
        # (draws in the tail or not) must use the same warps: the chunk
        # masses' summation order, and so the draws, depend on it.
        L.stats_kw = dict(WITH_GM=False, CHUNK=chunk, GROUP=GROUP, PLAN=L.fused_draws, GP2=cp2,
                          BRACKET=False, NS=HIST_PASSES, REJECT=True, DRAWS=DRAWS, MIXED=False,
                          **fk, **stream, **flags, **_plain_stats_options(device, warps))
        _rejection_kw(L, n, vocab, chunk, cp2, warps, device, False, 1, check_span, stream,
                      flags)
        return L
    # Per-request top-k with top-p (no min-p): outputs whose top-k is off
    # are top-p alone, and draw by rejection after the joint launches
    # (plan_row opens them; select_row leaves them). The single-program
    # path took 4.4 ms for such rows at B=16, V=128256 (H200, eighteenth
    # session), against FlashInfer's 0.24.
    L.mixed = fuse_ok and L.k_row and top_p is not None and min_p is None
    if L.mixed:
        L.draw0_first = n > fuse_rows["round0"]
        _rejection_kw(L, n, vocab, chunk, cp2, warps, device, True, gated_span, check_span,
                      stream, flags)
    L.filtered = filtered = top_k is not None or top_p is not None
    L.has_min_p = min_p is not None
    # final_kernel reads each chunk's mass every third entry of the stats'
    # float partials (plain), or from min_p_mass_kernel's own list.
    L.mass_step = 1 if L.has_min_p else 3
    L.cap = cap = min(CAP, max(16, _pow2(vocab)))  # V <= cap never overflows
    # Top-p alone keeps too many tokens to sort them all: a bracket around its
    # threshold is narrowed first, and the tokens above it are only summed.
    L.bracket = bracket = top_k is None and min_p is None and vocab > cap
    L.g_per_chunk = g_per_chunk = chunk // group
    # plan_row's bisections run over every group maximum of a row, in lanes
    # sized to the row: 1024 at V=32000, 4096 at 128256, 8192 at 151936 and
    # 262144. The size class's 8192 lanes at every V took plan_kernel 18.7
    # against 11.8 µs at B=256 and 61 against 37 at B=1024, V=128256 (H100,
    # eleventh session, benchmarks/plan_parts.py). The price: top-k's and
    # joint's launches compile a variant per power of two of chunks, so
    # warmup must see each vocabulary size served (its docstring says so).
    gp2 = _pow2(n_chunks) * g_per_chunk
    L.fuse = fuse = {step: fuse_ok and filtered and n <= rows for step, rows in fuse_rows.items()}
    # Top-k and joint: plan_row and select_row are the rare-heavy tails of
    # these two launches (three programs an SM, seventh session).
    regs = _reg_cap(device, 3, warps) if filtered and not bracket else {}
    # Without plan_row in its tail (above FUSE_ROWS["plan"]) the stats pass
    # fits four programs an SM: 199 -> 188 µs at B=1024 and 52 -> 49 at
    # B=256, V=128256, top-k 50 and joint alike, the same tokens (H200,
    # twentieth session, benchmarks/stats_variants.py; 56 registers: 204).
    # The cap also reaches top-p with min-p and per-request top-k calls with
    # rows off (the same pass; their speed was not measured apart).
    stats_regs = (_reg_cap(device, 3 if fuse["plan"] else 4, warps)
                  if filtered and not bracket else {})
    L.stats_kw = dict(WITH_GM=filtered, CHUNK=chunk, GROUP=group, PLAN=fuse["plan"], GP2=gp2,
                      BRACKET=bracket, NS=HIST_PASSES, REJECT=False, DRAWS=DRAWS, MIXED=L.mixed,
                      **fk, **stream, **flags,
                      **(dict(num_warps=warps, **stats_regs) if filtered
                         else _plain_stats_options(device, warps)))
    L.min_p_kw = dict(MINP_ROW=L.m_row, CHUNK=chunk, CP2=cp2, num_warps=warps, **flags)
    L.final_kw = dict(HAS_MINP=min_p is not None, MINP_ROW=L.m_row, CHUNK=chunk, CP2=cp2,
                      num_warps=warps, **stream, **flags)
    # plan_kernel at 114 registers runs two programs an SM; capped for three,
    # 23.5 -> 18.8 µs at B=256 and 90 -> 61 at B=1024 (H100, eleventh session,
    # benchmarks/plan_parts.py: 64 registers spilled and lost some of it).
    L.plan_kw = dict(GP2=gp2, G_PER_CHUNK=g_per_chunk, BRACKET=bracket, NS=HIST_PASSES,
                     MIXED=L.mixed, num_warps=warps, **fk, **flags, **_reg_cap(device, 3, warps))
    hist = dict(NS=HIST_PASSES, NB=HIST_BINS)
    L.hist_kw = dict(P_ROW=L.p_row, CHUNK=chunk, CP2=cp2, CAP=cap, NARROW=fuse["narrow"],
                     num_warps=warps, **hist, **flags)
    L.narrow_kw = dict(P_ROW=L.p_row, CP2=cp2, CAP=cap, num_warps=warps, **hist, **flags)
    L.select_kw = dict(HAS_MINP=min_p is not None, MINP_ROW=L.m_row, CAP=cap,
                       BLOCK=_block(vocab), CHUNK=chunk, BRACKET=bracket, MIXED=L.mixed,
                       num_warps=warps, **stream, **fk, **flags)
    L.compact_kw = dict(GROUP=group, SELECT=fuse["select"], **L.select_kw, **regs)
    return L


def _rejection_kw(L, n, vocab, chunk, cp2, warps, device, gated, first_span, check_span, stream,
                  flags):
    """The launches of top-p by rejection after the stats (``L.draw_kw``,
    ``L.check``: round, grid and options of each check launch), for top-p
    alone and for the outputs of a per-request top-k call whose top-k is off
    (``gated``). Round 0 reads ``first_span`` chunks a program, later rounds
    ``check_span``. With ``L.draw0_first`` round 0 checks draw 0 alone first, then
    all DRAWS draws of the rows that rejected it, reading ``check_span``
    chunks a program (``check_kernel``'s docstring says why)."""
    L.draw_kw = dict(P_ROW=L.p_row, CP2=cp2, CHUNK=chunk, DRAWS=DRAWS, GATED=gated,
                     num_warps=_warps(min(chunk, 1024)), **stream, **flags)
    # Four programs an SM: the decision tail (rare past round 0) spills.
    regs = _reg_cap(device, 4, warps)
    L.check = []
    launches = [(0, 1)] * L.draw0_first + [(k, DRAWS) for k in range(ROUNDS)]
    for i, (k, nq) in enumerate(launches):
        span = first_span if i == 0 else check_span
        # The first launch loads its chunk before the row's state, as nearly
        # every row is open; gated, most may be closed, and their chunks
        # would be read for nothing.
        L.check.append((k, (n, -(-L.n_chunks // span)), dict(
            P_ROW=L.p_row, CP2=cp2, CHUNK=chunk, BLOCK=_block(vocab), DRAWS=DRAWS,
            ROUNDS=ROUNDS, FIRST=i == 0 and not gated, SPAN=span, NQ=nq, num_warps=warps,
            **stream, **flags, **regs)))


def _rejection_rounds(L, w, n, draws, out, valid, common, seeds, p_ptr, p_val, t_ptr, t_val):
    """Top-p by rejection after the stats: round 0's draws (``draw_kernel``,
    where ``draws``: not already made in the stats launch's tail; draw 0
    alone with ``L.draw0_first``), then the ``check_kernel`` launches."""
    if draws:
        launch_with(chunked.draw_kernel, (n, 1 if L.draw0_first else DRAWS),
                    (*common, w.part_i, w.part_f, w.draws, w.st, *seeds, out, valid, p_ptr,
                     p_val, t_ptr, t_val), L.draw_kw)
    for k, grid, kw in L.check:
        launch_with(chunked.check_kernel, grid,
                    (*common, w.part_i, w.part_f, w.draws, w.st, w.sums, w.arrived, k, *seeds,
                     out, valid, p_ptr, p_val, t_ptr, t_val), kw)


def _sample_top_p(L, w, n, out, valid, common, seeds, p_ptr, p_val, t_ptr, t_val):
    """Top-p alone by adaptive rejection (docs/semantics.md section 5): the
    stats pass, round 0's draws (in its tail up to FUSE_ROWS["draws"]
    outputs, else ``draw_kernel``); each ``check_kernel`` launch reads the
    rows still open once, checks their draws and makes the next ones
    (ROUNDS launches, one more where round 0 checks draw 0 first: above
    FUSE_ROWS["round0"] outputs). 1 + ROUNDS to 3 + ROUNDS launches, no
    memset (the counters are zero at rest); a row decided in round 0 is
    read twice (three times if it rejects a lone draw 0). ``out`` and
    ``valid`` are the outputs' tensors or addresses (``n`` each)."""
    launch_with(chunked.stats_kernel, L.grid,
                (*common, t_ptr, t_val, w.part_i, w.part_f, w.draws, w.draws, w.draws, p_ptr,
                 p_val, p_ptr, p_val, w.st, w.arrived, *seeds, out, valid), L.stats_kw)
    _rejection_rounds(L, w, n, not L.fused_draws, out, valid, common, seeds, p_ptr, p_val, t_ptr,
                      t_val)
    if inspect is not None:
        inspect(SimpleNamespace(n=n, reject=True, state=w.st))


def _filter(call: FilterCall, mode: int, out_dtype) -> torch.Tensor:
    with _device_of(call.x):
        return _filter_on(call, mode, out_dtype)


def _filter_on(call: FilterCall, mode: int, out_dtype) -> torch.Tensor:
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
