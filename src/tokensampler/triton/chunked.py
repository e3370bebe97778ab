"""Kernels that split every row across programs (grid: outputs x chunks).

A row of V tokens is cut into ``C = cdiv(V, CHUNK)`` chunks; each program
reads one chunk once and writes a few numbers to a workspace; the next launch
combines them. Nothing waits on another program of the same launch.

Every sampler ends in the two-stage race of docs/semantics.md: a chunk by its
kept mass, then a token of that chunk, so random numbers are drawn for one
chunk of each row (CHUNK = rng.CHUNK_TOKENS whenever a row has several).

Plain sampling (1 read of the row plus one chunk, 2 launches):
    ``stats_kernel`` stores each chunk's statistics and mass; ``final_kernel``
    picks the chunk and races its tokens.
min-p (2 reads plus one chunk, 3 launches):
    ``stats_kernel``, then ``min_p_mass_kernel`` (kept mass per chunk, given
    the row's threshold; chunks whose maximum is below it are not read),
    then ``final_kernel``.
top-k / top-p / both (1 read plus the groups holding candidates, 2 launches;
4 above FUSE_ROWS outputs):
    ``stats_kernel(WITH_GM, PLAN)`` also stores each group's largest key
    (GROUP = 32 tokens; 16 or 8 for a large scalar top-k, triton._group),
    and the last of a row's programs to finish runs ``plan_row``: it
    bisects over those group maxima for a key ``L`` that every kept token
    must reach (k groups reaching ``L`` hold at least k tokens; their maxima
    alone carry the top-p mass), and lists the groups reaching ``L``;
    ``compact_kernel`` reads those groups only (CHUNK / GROUP of the list a
    program) and copies the tokens with key >= L into a per-row buffer (one
    atomic slot reservation per program, no waiting), and its row's last program
    runs ``select_row``: with top-p it sorts them by the exact order and
    applies the rules of docs/semantics.md to that prefix; top-k alone finds
    its k-th largest candidate by 16-way searches instead (no sort); then it
    races the kept ones (chunk masses summed exactly over the candidates).
top-p alone (3 to 2 + HIST_PASSES reads plus one chunk, 2 + HIST_PASSES launches):
    too many tokens are kept to sort them all, so ``plan_row`` opens a
    bracket ``[L, kmax]`` around the threshold. Each ``hist_kernel`` pass
    (bracket.py, one read) counts the bracket's tokens into NB bins of equal logit width
    (probs: equal width in the float bit pattern, a piecewise-linear log p)
    and sums the mass above the bracket exactly; its row's last program runs
    ``narrow_row``, which bounds each bin's mass by its count times its edge
    weights and keeps the bins where the prefix mass can cross the target.
    Rows whose bracket holds at most CAP tokens by that estimate skip the
    remaining passes (HIST_PASSES at most).
    ``compact_kernel`` collects the bracket and sums the tokens above it,
    which are kept for sure; ``select_row`` sorts the bracket, finishes the
    prefix, picks the chunk and races the tokens of that chunk. A row whose
    candidates overflow the buffer, or whose top-p prefix might end outside
    the bracket (float rounding, or bounds too loose after the last pass),
    takes the single-program path of kernels.py: bounded, slower, exact.

Top-p alone by adaptive rejection (docs/semantics.md section 5; 2 +
ROUNDS launches, one fewer up to FUSE_ROWS["draws"] outputs, one more above
FUSE_ROWS["round0"] where the draws do not fuse):
    ``draw_kernel`` makes round 0's DRAWS draws, a program per (output,
    draw): a chunk by the stats' masses, then one chunk read
    (``first_draws``); up to FUSE_ROWS["draws"] outputs (none as shipped)
    the row's last ``stats_kernel(REJECT)`` program makes them instead.
    Each ``check_kernel`` launch reads the rows still open once and sums,
    per chunk, the mass before each of its draws in the order. Above
    FUSE_ROWS["round0"] outputs ``draw_kernel`` makes draw 0 alone and the
    first check sums its masses alone; its row's last program
    (``decide_first``) keeps it if its prefix mass is below ``top_p * W``,
    which at least a fraction top_p of rows do, and otherwise makes round
    0's other DRAWS - 1 draws. Each other launch checks all DRAWS draws of
    a round: the row's last program (``decide_round``) takes the first draw
    whose prefix mass is below ``top_p * W``, or draws the next round from
    the tokens before the earliest draw (their chunk masses are those
    sums), or after the last round runs the race over the kept tokens
    itself (``final_race``: the threshold search, at most 8 passes, then 1
    pass and one chunk). A row decided in round 0 is read twice (three
    times if it rejects a lone draw 0). Worst case: the stats read, one
    read per check launch (ROUNDS, or ROUNDS + 1), the final race's 8 + 1,
    and a chunk per draw (DRAWS * ROUNDS + 1). No threshold is searched
    for unless every round fails, about ``(1 - p)**4`` of rows per round.
    The rows of a per-request top-k + top-p call (no min-p) whose top-k is
    off are top-p alone too: ``plan_row`` opens them (state 0) instead of
    planning candidates, ``select_row`` leaves them, and ``draw_kernel``
    (gated on the state) and the check rounds follow the joint launches,
    from the same stats (4 or 5 more launches for such calls, whether or
    not a row is open). Without top-p such rows have no filter left, and
    ``select_row`` races them from the stats' chunk masses (one chunk
    read), as it does rows whose top-k holds every positive token. Where
    steps do not fuse (ROCm), top-p alone goes through the histogram
    bracket below, and those rows, like the ones of a call that also has
    min-p, through the single-program ``kernels.reject_row`` (bounded,
    slower: 4.4 ms a row at V=128256).

Per-row steps run in the last program of the row to finish the launch
before them (``arrive``: an atomic counter, zero at rest, which that last
program resets; nothing waits for anything). A launch costs about 10 µs of host time on the H200
machine's CPU once launcher.py skips Triton's argument binding (26-30 µs
through ``kernel[grid]``; benchmarks/host_paths.py), so small batches are
bound by the number of launches. Top-k and joint fuse ``plan_row`` and
``select_row`` only up to ``FUSE_ROWS`` outputs (triton/__init__.py; above,
the GPU time decides, and the tails cost more than two launches) and above
that launch ``plan_kernel`` and ``select_kernel`` (4 launches); top-p's
round-0 draws run in ``draw_kernel`` at every batch (in the stats tail a
row's last program reads 4 chunks one after another). On ROCm every step is
a launch of its own (docs/reliability.md, section 5), and so the histogram
bracket of top-p alone takes 2 + 2 * HIST_PASSES + 2 launches.

Combining chunk partials costs each program ``C <= 64`` loads; bisection is
BISECT_STEPS (20; 32 with the histogram bracket) fixed steps over at most
8192 group maxima (32 tokens a group, down to 8 for a large scalar top-k:
triton._group).
"""

import triton
import triton.language as tl

from . import rng as trng
from . import row
from .kernels import (_k_param, _min_p_floor, _param, final_race, pick_chunk, race_key, sample_row,
                      stream_of, top_p_alone)

NI: tl.constexpr = tl.constexpr(6)   # int32 partials per chunk
NF: tl.constexpr = tl.constexpr(3)   # float32 partials per chunk
INT_MIN: tl.constexpr = tl.constexpr(-2147483648)
INT_MAX: tl.constexpr = tl.constexpr(2147483647)
# plan_row's halvings of the key interval [kmin, kmax] (at most 2**32 wide):
# after 20 the bound is within 2**12 keys (4096 float32 ulps, 0.05% of the
# value) below the largest valid one. 32 found it exactly, at 4200 of the
# plan's 6163 instructions a thread (sm_90; eleventh session). The last 12
# halvings added no candidate on N(0, 1) rows at k = 50
# (benchmarks/plan_parts.py); where they would, select sorts a few more.
BISECT_STEPS: tl.constexpr = tl.constexpr(20)
KEY_INF: tl.constexpr = tl.constexpr(0x7F800000)        # order key of +inf
KEY_NEG_INF: tl.constexpr = tl.constexpr(-0x7F800001)   # of -inf from logits
# Sizes change from call to call; specialising on them (== 1, divisible by 16)
# would compile a new variant for each batch size. V keeps that specialisation:
# knowing V % 16 == 0 lets the masked row loads use 16-byte vectors (measured:
# scalar loads held a pass to half the HBM rate), and it makes two variants at most.
_SIZES = ["B", "C", "seed_step", "off_step"]


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
    k = _k_param(k_ptr, k_val, j, HAS_K, K_ROW)
    p = _param(p_ptr, p_val, j, HAS_P, P_ROW, tl.float32)
    mp = _param(mp_ptr, mp_val, j, HAS_MINP, MINP_ROW, tl.float32)
    temp = _param(t_ptr, t_val, j, FROM_LOGITS, T_ROW, tl.float32)
    ok &= ~((p != p) | (p < 0.0) | (p > 1.0) | (mp != mp) | (mp > 1.0))
    ok &= ~((temp != temp) | (temp < 0.0) | (temp == float("inf")))
    greedy = FROM_LOGITS & (temp == 0.0)
    inv_t = row.inverse_temperature(temp)
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
def race_in_chunk(x_ptr, row_off, V, chunk, keep_floor, t, last, seed, offset, stream, ref, mul,
                  draw, FROM_LOGITS: tl.constexpr, CHUNK: tl.constexpr):
    """Stage two of draw ``draw``: the race winner among the kept tokens of
    ``chunk``: positive, at least ``keep_floor`` (min-p; -inf keeps all) and in
    the prefix ``key > t`` or ``key == t`` at index <= ``last``
    (``t = INT_MIN, last = INT_MAX`` keeps all); the chunk's first index when
    none is kept. One read of one chunk, SUB tokens at a time: this runs at
    the end of streaming kernels (the row's last program), and a whole
    chunk's Philox words at once took 188 registers a thread, which cut the
    occupancy of the whole kernel threefold (measured on an H100)."""
    SUB: tl.constexpr = min(CHUNK, 1024)
    best = tl.full([], float("-inf"), tl.float32)
    best_i = tl.full([], INT_MAX, tl.int32)
    for s in tl.static_range(0, CHUNK, SUB):
        start = chunk * CHUNK + s
        cols = start + tl.arange(0, SUB)
        v, inb = row.load(x_ptr, row_off, cols, V, FROM_LOGITS)
        key = row.order_key(v, FROM_LOGITS)
        keep = row.positive(v, inb, FROM_LOGITS) & (v >= keep_floor)
        keep &= (key > t) | ((key == t) & (cols <= last))
        ex = trng.exponential(trng.block_bits(start, SUB, seed, offset, stream, draw))
        race = tl.where(keep, race_key(v, ex, ref, mul, FROM_LOGITS), float("-inf"))
        bk = tl.max(race)
        bi = tl.min(tl.where(race == bk, cols, INT_MAX))
        # Strictly greater: the lowest index wins ties across sub-blocks too.
        better = (bk > best) | (best_i == INT_MAX)
        best_i = tl.where(better, bi, best_i)
        best = tl.where(better, bk, best)
    return best_i


@triton.jit
def arrive(counter_ptr, C):
    """Whether this program is the last of its row's ``C`` programs to get
    here (``counter_ptr``, zero when the launch starts, counts them).

    It lets a launch end with per-row work (the next step of the pipeline)
    without a launch of its own: nothing waits, the programs that arrive
    earlier just finish. The barrier puts every store of this program before
    the atomic, whose release/acquire (GPU scope) makes the stores of all the
    row's programs visible to the last one.

    The last program sets the counter back to zero: no other program of the
    launch touches it again, and the next launch to use it starts after this
    one ends. So a workspace of counters stays zero at rest and no call
    zeroes it first (workspace.py). Every program of a row must arrive, or
    none: a launch whose row's programs arrived only in part would leave
    its counter short of zero for the next call. Each call site arrives
    under a condition all of the row's programs share.
    """
    tl.debug_barrier()
    last = tl.atomic_add(counter_ptr, 1, sem="acq_rel", scope="gpu") == C - 1
    if last:
        tl.store(counter_ptr, 0)
    return last


@triton.jit(do_not_specialize=_SIZES)
def stats_kernel(x_ptr, stride_row, V, B, C, idx_ptr, t_ptr, t_val, pi_ptr, pf_ptr, gm_ptr,
                 plan_ptr, gl_ptr, k_ptr, k_val, p_ptr, p_val, st_ptr, arrived_ptr, seed_ptr,
                 seed_step, off_ptr, off_step, out_ptr, valid_ptr,
                 HAS_INDICES: tl.constexpr, FROM_LOGITS: tl.constexpr, T_ROW: tl.constexpr,
                 WITH_GM: tl.constexpr, CHUNK: tl.constexpr, GROUP: tl.constexpr,
                 PLAN: tl.constexpr, HAS_K: tl.constexpr, K_ROW: tl.constexpr,
                 HAS_P: tl.constexpr, P_ROW: tl.constexpr, JOINT: tl.constexpr,
                 CP2: tl.constexpr, GP2: tl.constexpr, BRACKET: tl.constexpr,
                 NS: tl.constexpr, REJECT: tl.constexpr, STREAM_IS_POS: tl.constexpr,
                 DRAWS: tl.constexpr, MIXED: tl.constexpr):
    """Chunk (j, c): its statistics and its mass in its own scale (the plain
    sampler's chunk weight); with WITH_GM the maxima of its GROUP-token groups.
    One read of the chunk; a chunk holding a NaN, an infinity or a negative
    weight is reduced again from registers (``_exact_stats``). With PLAN
    (top-k, top-p), the row's last program to finish then plans its
    candidates (``plan_row``), or with REJECT (top-p alone) makes the first
    round of draws (``first_draws``)."""
    j = tl.program_id(0)
    c = tl.program_id(1)
    ok, row_off, _k, _p, _m, greedy, inv_t = request(
        j, idx_ptr, B, stride_row, t_ptr, 0, t_ptr, 1.0, t_ptr, 0.0, t_ptr, t_val,
        HAS_INDICES, False, False, False, False, False, False, FROM_LOGITS, T_ROW)
    cols = c * CHUNK + tl.arange(0, CHUNK)
    v, inb = row.load(x_ptr, row_off, cols, V, FROM_LOGITS)
    base = (j * C + c).to(tl.int64)
    # The chunk's largest and smallest order keys show whether it holds a
    # NaN, an infinity or (probs) a negative weight: then every token's
    # validity is tested (_exact_stats). Otherwise a token is kept iff its
    # key is above ``low`` (past the row's end the load gave 0 or -inf,
    # keyed ``low``), and where the chunk has no such token, every one is
    # kept: the reductions need no masks, and the pass was issue-bound at
    # half the read rate (benchmarks/RESULTS.md, eighth session).
    key = row.order_key(v, FROM_LOGITS)
    hi = tl.max(key)
    lo = tl.min(key)
    low: tl.constexpr = KEY_NEG_INF if FROM_LOGITS else 0
    if (hi >= KEY_INF) | (lo < low):
        _exact_stats(v, inb, cols, base, inv_t, pi_ptr, pf_ptr, gm_ptr, FROM_LOGITS, WITH_GM,
                     CHUNK, GROUP)
    else:
        any_pos = hi > low
        vmax = tl.where(any_pos, row.key_value(hi, FROM_LOGITS), float("-inf"))
        at_max = key == hi
        amax = tl.min(tl.where(at_max, cols, INT_MAX))
        n_max = tl.sum(at_max.to(tl.int32))
        kmin = lo
        n_pos = tl.full([], CHUNK, tl.int32)
        if lo == low:    # zero weights, or the row's end
            kmin = tl.min(tl.where(key > low, key, INT_MAX))
            n_pos = tl.sum((key > low).to(tl.int32))
        if FROM_LOGITS:
            safe = tl.where(any_pos, vmax, 0.0)
            scale = vmax
            acc = tl.sum(tl.where(key > low, tl.exp((v - safe) * inv_t), 0.0))
        else:
            e = row.exponent(tl.maximum(vmax, 0.0))
            scale = e.to(tl.float32)
            # Every token is a weight or a zero (+0.0 or -0.0): the where
            # of _exact_stats only fixes the sign of an all-zero sum.
            acc = tl.sum(v * row.pow2(-e)) + 0.0
        tl.store(pi_ptr + base * NI, 0)
        tl.store(pi_ptr + base * NI + 1, tl.where(any_pos, hi, INT_MIN))
        tl.store(pi_ptr + base * NI + 2, kmin)
        tl.store(pi_ptr + base * NI + 3, tl.where(any_pos, amax, INT_MAX))
        tl.store(pi_ptr + base * NI + 4, n_pos)
        tl.store(pi_ptr + base * NI + 5, tl.where(any_pos, n_max, 0))
        tl.store(pf_ptr + base * NF, vmax)
        tl.store(pf_ptr + base * NF + 1, scale)
        tl.store(pf_ptr + base * NF + 2, acc)
        if WITH_GM:
            G: tl.constexpr = CHUNK // GROUP
            gk = tl.max(tl.reshape(key, (G, GROUP)), axis=1)
            tl.store(gm_ptr + base * G + tl.arange(0, G), tl.where(gk > low, gk, INT_MIN))
    if PLAN:
        if arrive(arrived_ptr + j, C):
            if REJECT:
                first_draws(j, 0, x_ptr, stride_row, V, B, C, idx_ptr, pi_ptr, pf_ptr, plan_ptr,
                            st_ptr, seed_ptr, seed_step, off_ptr, off_step, out_ptr, valid_ptr,
                            p_ptr, p_val, t_ptr, t_val, HAS_INDICES, FROM_LOGITS, P_ROW, T_ROW,
                            STREAM_IS_POS, CP2, CHUNK, DRAWS, DRAWS)
            else:
                plan_row(j, pi_ptr, pf_ptr, gm_ptr, plan_ptr, gl_ptr, V, C, B, idx_ptr,
                         stride_row, k_ptr, k_val, p_ptr, p_val, t_ptr, t_val, st_ptr,
                         HAS_INDICES, FROM_LOGITS, HAS_K, K_ROW, HAS_P, P_ROW, T_ROW, JOINT, CP2,
                         GP2, CHUNK // GROUP, BRACKET, NS, MIXED)


@triton.jit
def _exact_stats(v, inb, cols, base, inv_t, pi_ptr, pf_ptr, gm_ptr, FROM_LOGITS: tl.constexpr,
                 WITH_GM: tl.constexpr, CHUNK: tl.constexpr, GROUP: tl.constexpr):
    """``stats_kernel``'s partials of a chunk holding a NaN, an infinity or a
    negative weight, with every token's validity tested."""
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


@triton.jit
def chunk_log_scale(pf_ptr, b, m, ref, inv_t, FROM_LOGITS: tl.constexpr):
    """log of the factor that brings chunk masses (in each chunk's own scale,
    stats_kernel) to the row's scale."""
    if FROM_LOGITS:
        cm = tl.load(pf_ptr + b * NF, mask=m, other=float("-inf"))
        return (cm - ref) * inv_t
    else:
        return tl.load(pf_ptr + b * NF + 1, mask=m, other=0.0) * 0.6931471805599453


@triton.jit(do_not_specialize=_SIZES)
def min_p_mass_kernel(x_ptr, stride_row, V, B, C, idx_ptr, mp_ptr, mp_val, t_ptr, t_val, pi_ptr,
                      pf_ptr, mass_ptr, HAS_INDICES: tl.constexpr, FROM_LOGITS: tl.constexpr,
                      MINP_ROW: tl.constexpr, T_ROW: tl.constexpr, CHUNK: tl.constexpr,
                      CP2: tl.constexpr):
    """Chunk (j, c): the mass of its tokens that pass min-p (the row's threshold),
    in the chunk's own scale. A chunk whose maximum is below the threshold
    stores 0 without reading its tokens."""
    j = tl.program_id(0)
    c = tl.program_id(1)
    ok, row_off, _k, _p, mp, greedy, inv_t = request(
        j, idx_ptr, B, stride_row, mp_ptr, 0, mp_ptr, 1.0, mp_ptr, mp_val, t_ptr, t_val,
        HAS_INDICES, False, False, False, False, True, MINP_ROW, FROM_LOGITS, T_ROW)
    bad, kmax, kmin, amax, n_pos, n_max, vmax, ref, mul, total = combine_stats(
        pi_ptr, pf_ptr, j, C, inv_t, FROM_LOGITS, CP2)
    base = (j * C + c).to(tl.int64)
    floor = _min_p_floor(mp, vmax)
    mass = tl.zeros([], tl.float32)
    if tl.load(pf_ptr + base * NF) >= floor:
        cols = c * CHUNK + tl.arange(0, CHUNK)
        v, inb = row.load(x_ptr, row_off, cols, V, FROM_LOGITS)
        keep = row.positive(v, inb, FROM_LOGITS) & (v >= floor)
        if FROM_LOGITS:
            w = tl.exp((v - tl.load(pf_ptr + base * NF)) * inv_t)
        else:
            w = v * row.pow2(-tl.load(pf_ptr + base * NF + 1).to(tl.int32))
        mass = tl.sum(tl.where(keep, w, 0.0))
    tl.store(mass_ptr + base, mass)


@triton.jit(do_not_specialize=_SIZES)
def final_kernel(x_ptr, stride_row, V, B, C, idx_ptr, pi_ptr, pf_ptr, mass_ptr, mass_step,
                 seed_ptr, seed_step, off_ptr, off_step, mp_ptr, mp_val, t_ptr, t_val, out_ptr,
                 valid_ptr, HAS_INDICES: tl.constexpr, FROM_LOGITS: tl.constexpr,
                 HAS_MINP: tl.constexpr, MINP_ROW: tl.constexpr, T_ROW: tl.constexpr,
                 STREAM_IS_POS: tl.constexpr, CHUNK: tl.constexpr, CP2: tl.constexpr):
    """Output j of plain or min-p sampling: validity from the row's partials,
    then the two-stage race: a chunk by its kept mass (``mass_ptr``, one value
    per chunk every ``mass_step`` floats, each in its chunk's own scale), then
    a token of that chunk (one read of one chunk)."""
    j = tl.program_id(0)
    ok, row_off, _k, _p, mp, greedy, inv_t = request(
        j, idx_ptr, B, stride_row, mp_ptr, 0, mp_ptr, 1.0, mp_ptr, mp_val, t_ptr, t_val,
        HAS_INDICES, False, False, False, False, HAS_MINP, MINP_ROW, FROM_LOGITS, T_ROW)
    bad, kmax, kmin, amax, n_pos, n_max, vmax, ref, mul, total = combine_stats(
        pi_ptr, pf_ptr, j, C, inv_t, FROM_LOGITS, CP2)
    ok &= (bad == 0) & (n_pos > 0)
    token = amax
    if ok & ~greedy:
        seed = tl.load(seed_ptr + j * seed_step)
        offset = tl.load(off_ptr + j * off_step)
        stream = stream_of(j, STREAM_IS_POS)
        floor = float("-inf")
        if HAS_MINP:
            floor = _min_p_floor(mp, vmax)
        token = two_stage_race(j, x_ptr, row_off, V, C, pf_ptr, mass_ptr, mass_step, floor, ref,
                               mul, inv_t, seed, offset, stream, FROM_LOGITS, CP2, CHUNK)
    tl.store(out_ptr + j, tl.where(ok, token, 0).to(tl.int32))
    tl.store(valid_ptr + j, ok)


@triton.jit
def two_stage_race(j, x_ptr, row_off, V, C, pf_ptr, mass_ptr, mass_step, floor, ref, mul, inv_t,
                   seed, offset, stream, FROM_LOGITS: tl.constexpr, CP2: tl.constexpr,
                   CHUNK: tl.constexpr):
    """Draw 0 of output j over its tokens of weight above 0 and at least
    ``floor``: a chunk by its kept mass (``mass_ptr``, one value per chunk
    every ``mass_step`` floats, each in its chunk's own scale), then a token
    of that chunk (one read of one chunk)."""
    chunk = tl.zeros([], tl.int32)
    if C > 1:
        cc = tl.arange(0, CP2)
        m = cc < C
        b = (j * C + cc).to(tl.int64)
        mass = tl.load(mass_ptr + b * mass_step, mask=m, other=0.0)
        log_mass = tl.where(mass > 0.0, tl.log(mass) + chunk_log_scale(
            pf_ptr, b, m, ref, inv_t, FROM_LOGITS), float("-inf"))
        chunk = pick_chunk(log_mass, cc, m, seed, offset, stream, 0)
    return race_in_chunk(x_ptr, row_off, V, chunk, floor, INT_MIN, INT_MAX, seed, offset, stream,
                         ref, mul, 0, FROM_LOGITS, CHUNK)


# --- top-p alone: adaptive rejection (docs/semantics.md section 5) ----------

@triton.jit
def _draw_round(k, q0, x_ptr, row_off, V, C, log_mass, t, last, seed, offset, stream, ref, mul,
                draws_ptr, FROM_LOGITS: tl.constexpr, CP2: tl.constexpr, CHUNK: tl.constexpr,
                DRAWS: tl.constexpr, NQ: tl.constexpr):
    """Draws ``q0 .. q0 + NQ - 1`` of round k (of its DRAWS) from the set
    ``key > t`` or ``key == t`` at index <= ``last``, whose log mass per chunk
    is ``log_mass``: a chunk each, then the race in it (one chunk read a
    draw). Stored at ``draws_ptr + q0 + r``, and the drawn token's order key
    DRAWS slots later: ``check_kernel`` loads it with the draw, not after it."""
    cc = tl.arange(0, CP2)
    for r in tl.static_range(NQ):
        q = k * DRAWS + q0 + r
        chunk = tl.zeros([], tl.int32)
        if C > 1:
            chunk = pick_chunk(log_mass, cc, cc < C, seed, offset, stream, q)
        d = race_in_chunk(x_ptr, row_off, V, chunk, float("-inf"), t, last, seed, offset, stream,
                          ref, mul, q, FROM_LOGITS, CHUNK)
        tl.store(draws_ptr + q0 + r, d)
        dkey = row.order_key(tl.load(x_ptr + row_off + d).to(tl.float32), FROM_LOGITS)
        tl.store(draws_ptr + DRAWS + q0 + r, dkey)


@triton.jit
def _row_log_mass(pf_ptr, j, C, ref, inv_t, FROM_LOGITS: tl.constexpr, CP2: tl.constexpr):
    """Round 0's log mass per chunk of output j: the stats' chunk masses
    in the row's scale (the set every token of weight above 0)."""
    cc = tl.arange(0, CP2)
    m = cc < C
    b = (j * C + cc).to(tl.int64)
    mass = tl.load(pf_ptr + b * NF + 2, mask=m, other=0.0)
    return tl.where(mass > 0.0, tl.log(mass) + chunk_log_scale(pf_ptr, b, m, ref, inv_t,
                                                                FROM_LOGITS), float("-inf"))


@triton.jit
def first_draws(j, q0, x_ptr, stride_row, V, B, C, idx_ptr, pi_ptr, pf_ptr, draws_ptr, st_ptr,
                seed_ptr, seed_step, off_ptr, off_step, out_ptr, valid_ptr, p_ptr, p_val, t_ptr,
                t_val, HAS_INDICES: tl.constexpr, FROM_LOGITS: tl.constexpr, P_ROW: tl.constexpr,
                T_ROW: tl.constexpr, STREAM_IS_POS: tl.constexpr, CP2: tl.constexpr,
                CHUNK: tl.constexpr, DRAWS: tl.constexpr, NQ: tl.constexpr):
    """Output j: round 0's draws ``q0 .. q0 + NQ - 1`` from the whole row,
    chunks by the stats' masses. The call with ``q0 == 0`` also sets the
    row's state: ``st[j] = 0``, or for an invalid or greedy row its answer
    and ``st[j] = -1``. A row decided in round k ends with ``st[j] = -2 - k``;
    by the final race, ``-2 - ROUNDS``. Run by the last of the row's
    ``stats_kernel`` programs (all DRAWS draws) or by ``draw_kernel``; where
    round 0 checks draw 0 first, ``decide_first`` makes draws 1 .. DRAWS - 1
    for the rows that reject it."""
    ok, row_off, _k, _p, _m, greedy, inv_t = request(
        j, idx_ptr, B, stride_row, p_ptr, 0, p_ptr, p_val, p_ptr, 0.0, t_ptr, t_val,
        HAS_INDICES, False, False, True, P_ROW, False, False, FROM_LOGITS, T_ROW)
    bad, kmax, kmin, amax, n_pos, n_max, vmax, ref, mul, total = combine_stats(
        pi_ptr, pf_ptr, j, C, inv_t, FROM_LOGITS, CP2)
    ok &= (bad == 0) & (n_pos > 0)
    if ok & ~greedy:
        _draw_round(0, q0, x_ptr, row_off, V, C, _row_log_mass(pf_ptr, j, C, ref, inv_t,
                                                               FROM_LOGITS, CP2),
                    INT_MIN, INT_MAX, tl.load(seed_ptr + j * seed_step),
                    tl.load(off_ptr + j * off_step), stream_of(j, STREAM_IS_POS), ref, mul,
                    draws_ptr + j * 2 * DRAWS, FROM_LOGITS, CP2, CHUNK, DRAWS, NQ)
        if q0 == 0:
            tl.store(st_ptr + j, 0)
    elif q0 == 0:
        tl.store(st_ptr + j, -1)
        tl.store(out_ptr + j, tl.where(ok, amax, 0).to(tl.int32))
        tl.store(valid_ptr + j, ok)


@triton.jit(do_not_specialize=_SIZES)
def draw_kernel(x_ptr, stride_row, V, B, C, idx_ptr, pi_ptr, pf_ptr, draws_ptr, st_ptr,
                seed_ptr, seed_step, off_ptr, off_step, out_ptr, valid_ptr, p_ptr, p_val, t_ptr,
                t_val, HAS_INDICES: tl.constexpr, FROM_LOGITS: tl.constexpr, P_ROW: tl.constexpr,
                T_ROW: tl.constexpr, STREAM_IS_POS: tl.constexpr, CP2: tl.constexpr,
                CHUNK: tl.constexpr, DRAWS: tl.constexpr, GATED: tl.constexpr):
    """Program (j, q): round 0's draw q of output j (``first_draws``; one
    chunk read): a grid of (outputs, DRAWS), or (outputs, 1) where round 0
    checks draw 0 first (``check_kernel``). Above FUSE_ROWS["draws"] outputs
    the draws run here rather than in the stats launch's tail: the tail
    raised that streaming kernel's registers (96 against 77) and ran the
    four races one after another (benchmarks/RESULTS.md, seventh session).
    GATED (a per-request top-k call, ``plan_row`` with MIXED): only outputs
    whose state is 0 draw."""
    if GATED:
        if tl.load(st_ptr + tl.program_id(0)) != 0:
            return
    first_draws(tl.program_id(0), tl.program_id(1), x_ptr, stride_row, V, B, C, idx_ptr, pi_ptr,
                pf_ptr, draws_ptr, st_ptr, seed_ptr, seed_step, off_ptr, off_step, out_ptr,
                valid_ptr, p_ptr, p_val, t_ptr, t_val, HAS_INDICES, FROM_LOGITS, P_ROW, T_ROW,
                STREAM_IS_POS, CP2, CHUNK, DRAWS, 1)


@triton.jit(do_not_specialize=_SIZES + ["k"])
def check_kernel(x_ptr, stride_row, V, B, C, idx_ptr, pi_ptr, pf_ptr, draws_ptr, st_ptr,
                 part_ptr, arrived_ptr, k, seed_ptr, seed_step, off_ptr, off_step, out_ptr,
                 valid_ptr, p_ptr, p_val, t_ptr, t_val, HAS_INDICES: tl.constexpr,
                 FROM_LOGITS: tl.constexpr, P_ROW: tl.constexpr, T_ROW: tl.constexpr,
                 STREAM_IS_POS: tl.constexpr, CP2: tl.constexpr, CHUNK: tl.constexpr,
                 BLOCK: tl.constexpr, DRAWS: tl.constexpr, ROUNDS: tl.constexpr,
                 FIRST: tl.constexpr, SPAN: tl.constexpr, NQ: tl.constexpr):
    """Round k of top-p alone, chunks ``c * SPAN .. c * SPAN + SPAN - 1`` of
    output j: for each of the row's first NQ draws, the mass (chunk scale) of
    each chunk's tokens before it in the order (docs/semantics.md section 3).
    One read of the row's chunks; rows decided in an earlier launch read
    nothing. The row's last program to finish then decides (``decide_round``;
    with NQ = 1, ``decide_first``).

    Above FUSE_ROWS["round0"] outputs round 0 takes two launches: draw 0
    alone (NQ = 1), then, for the rows that reject it, all DRAWS draws
    (NQ = DRAWS; ``decide_first`` makes draws 1 .. DRAWS - 1). The token is
    the first kept draw either way, so it is the same; but most rows keep
    draw 0 (a row keeps it with probability at least top_p), and the pass
    that nearly every row takes sums one mass a token, not DRAWS: at four
    it was issue-bound (nineteenth session: 34 instructions a token, 44% of
    DRAM's rate). The second launch is latency-bound, so small batches
    check all DRAWS draws at once (H200, V=128256, top-p 0.9, twentieth
    session: B=1024 533 -> 443 µs, B=256 146 -> 160).

    Round 0 of top-p alone (FIRST, SPAN = 1): nearly every row is open, so
    the chunk, the draws and their keys are loaded before the row's state
    arrives rather than after it (an invalid or greedy row's chunk is read
    for nothing): a program waits on one round trip to memory, not three.
    Later rounds: few rows are open, and most programs only read the state
    and return; a program covers SPAN chunks one after another, so the
    launch has SPAN times fewer of them (B=256, V=128256 on an H200: a
    launch of one program a chunk took 7 µs with nearly every row decided).
    Round 0 of the rows of a per-request top-k call whose top-k is off
    takes this form too (SPAN = GATED_SPAN), as most rows of such a call
    may be closed."""
    j = tl.program_id(0)
    c = tl.program_id(1)
    at = draws_ptr + j * 2 * DRAWS + tl.arange(0, DRAWS)
    if FIRST:
        cols = c * CHUNK + tl.arange(0, CHUNK)
        ok, row_off, _k, p, _m, greedy, inv_t = request(
            j, idx_ptr, B, stride_row, p_ptr, 0, p_ptr, p_val, p_ptr, 0.0, t_ptr, t_val,
            HAS_INDICES, False, False, True, P_ROW, False, False, FROM_LOGITS, T_ROW)
        v, inb = row.load(x_ptr, row_off, cols, V, FROM_LOGITS)
        d = tl.load(at)   # (garbage for a row with no draws; used only if open)
        dkey = tl.load(at + DRAWS)
        if tl.load(st_ptr + j) == k:
            _check_chunk(j, c, k, v, inb, cols, d, dkey, row_off, p, inv_t, x_ptr, V, C,
                         pi_ptr, pf_ptr, draws_ptr, st_ptr, part_ptr, arrived_ptr, seed_ptr,
                         seed_step, off_ptr, off_step, out_ptr, valid_ptr, FROM_LOGITS,
                         STREAM_IS_POS, CP2, CHUNK, BLOCK, DRAWS, ROUNDS, NQ)
    else:
        if tl.load(st_ptr + j) == k:
            ok, row_off, _k, p, _m, greedy, inv_t = request(
                j, idx_ptr, B, stride_row, p_ptr, 0, p_ptr, p_val, p_ptr, 0.0, t_ptr, t_val,
                HAS_INDICES, False, False, True, P_ROW, False, False, FROM_LOGITS, T_ROW)
            d = tl.load(at)
            dkey = tl.load(at + DRAWS)
            # The row's last chunk to arrive is the last of its program's
            # span, so no program goes on after the row is decided.
            for i in range(SPAN):
                cc = c * SPAN + i
                if cc < C:
                    cols = cc * CHUNK + tl.arange(0, CHUNK)
                    v, inb = row.load(x_ptr, row_off, cols, V, FROM_LOGITS)
                    _check_chunk(j, cc, k, v, inb, cols, d, dkey, row_off, p, inv_t, x_ptr, V,
                                 C, pi_ptr, pf_ptr, draws_ptr, st_ptr, part_ptr, arrived_ptr,
                                 seed_ptr, seed_step, off_ptr, off_step, out_ptr, valid_ptr,
                                 FROM_LOGITS, STREAM_IS_POS, CP2, CHUNK, BLOCK, DRAWS, ROUNDS,
                                 NQ)


@triton.jit
def _check_chunk(j, c, k, v, inb, cols, draws, draw_keys, row_off, p, inv_t, x_ptr, V, C,
                 pi_ptr, pf_ptr, draws_ptr, st_ptr, part_ptr, arrived_ptr, seed_ptr, seed_step,
                 off_ptr, off_step, out_ptr, valid_ptr, FROM_LOGITS: tl.constexpr,
                 STREAM_IS_POS: tl.constexpr, CP2: tl.constexpr, CHUNK: tl.constexpr,
                 BLOCK: tl.constexpr, DRAWS: tl.constexpr, ROUNDS: tl.constexpr,
                 NQ: tl.constexpr):
    """``check_kernel``'s work on its loaded chunk ``v`` of an open row, given
    the row's draws and their order keys (DRAWS-vectors, the first NQ of
    them checked)."""
    base = (j * C + c).to(tl.int64)
    # Two instructions a token fewer than the general forms, the same sums
    # (this pass issues ~30 a token and is half issue-bound, nineteenth
    # session): a token past the row's end was loaded as a value that is not
    # positive, so ``inb`` adds nothing to the weight's mask; and in probs a
    # -0.0 has no weight, so its key need not be +0.0's (order_key's add).
    # In logits -0.0 weighs exp(-m) and must key as +0.0.
    if FROM_LOGITS:
        key = row.order_key(v, FROM_LOGITS)
    else:
        key = v.to(tl.int32, bitcast=True)
    shift, factor = _chunk_scale(pf_ptr, base, inv_t, FROM_LOGITS)
    w = _local_weight(v, row.positive(v, True, FROM_LOGITS), shift, factor, inv_t, FROM_LOGITS)
    # One 1-D sum per draw: a [CHUNK, DRAWS] mask took 179 registers a
    # thread and a third of the occupancy (measured on an H100).
    r = tl.arange(0, DRAWS)
    for q in tl.static_range(NQ):
        d = tl.sum(tl.where(r == q, draws, 0))
        dkey = tl.sum(tl.where(r == q, draw_keys, 0))
        if c == d // CHUNK:
            before = (key > dkey) | ((key == dkey) & (cols < d))
            mass = tl.sum(tl.where(before, w, 0.0))
        else:
            # A token tied with the draw comes before it exactly when its
            # chunk does: one compare a token, not three (the same sets, so
            # the same sums). A drawn token has positive weight, so its key
            # is above INT_MIN.
            t = tl.where(c < d // CHUNK, dkey - 1, dkey)
            mass = tl.sum(tl.where(key > t, w, 0.0))
        tl.store(part_ptr + base * DRAWS + q, mass)
    if arrive(arrived_ptr + j, C):
        if NQ == 1:
            decide_first(j, x_ptr, row_off, V, C, pi_ptr, pf_ptr, draws_ptr, st_ptr, part_ptr,
                         seed_ptr, seed_step, off_ptr, off_step, out_ptr, valid_ptr, p, inv_t,
                         FROM_LOGITS, STREAM_IS_POS, CP2, CHUNK, DRAWS)
        else:
            decide_round(j, k, x_ptr, row_off, V, C, pi_ptr, pf_ptr, draws_ptr, st_ptr,
                         part_ptr, seed_ptr, seed_step, off_ptr, off_step, out_ptr, valid_ptr,
                         p, inv_t, FROM_LOGITS, STREAM_IS_POS, CP2, CHUNK, BLOCK, DRAWS, ROUNDS)


@triton.jit
def _kept(part_ptr, b, m, fac, q, d, amax, p, total, DRAWS: tl.constexpr):
    """Whether draw q (token d) of a row is kept: the mass of the tokens
    before it, in the row's scale, is below ``top_p`` of the row's total, or
    it is the first token of the order. Both of round 0's deciders use it, so
    they sum the same numbers through the same code. (Triton could still lay
    the lanes out differently in the two callers. Then a draw whose prefix
    mass ties ``top_p * W`` within float32 rounding could be decided either
    way, which docs/semantics.md section 4 allows. The GPU's bitwise test of
    the forms found no such row.)"""
    before = tl.sum(tl.load(part_ptr + b * DRAWS + q, mask=m, other=0.0) * fac)
    return (before < p * total) | (d == amax) | (p >= 1.0)


@triton.jit
def decide_first(j, x_ptr, row_off, V, C, pi_ptr, pf_ptr, draws_ptr, st_ptr, part_ptr,
                 seed_ptr, seed_step, off_ptr, off_step, out_ptr, valid_ptr, p, inv_t,
                 FROM_LOGITS: tl.constexpr, STREAM_IS_POS: tl.constexpr, CP2: tl.constexpr,
                 CHUNK: tl.constexpr, DRAWS: tl.constexpr):
    """Output j after draw 0 of round 0 was checked: if kept, it is the token
    (the first kept draw; ``st[j] = -2``). If not, the row makes round 0's
    draws 1 .. DRAWS - 1 here (DRAWS - 1 chunk reads), as ``first_draws``
    would have, and stays open (``st[j] = 0``) for the launch that checks all
    DRAWS draws and decides as ``decide_round``."""
    bad, kmax, kmin, amax, n_pos, n_max, vmax, ref, mul, total = combine_stats(
        pi_ptr, pf_ptr, j, C, inv_t, FROM_LOGITS, CP2)
    cc = tl.arange(0, CP2)
    m = cc < C
    b = (j * C + cc).to(tl.int64)
    fac = _to_row_scale(pf_ptr, b, m, ref, mul, inv_t, FROM_LOGITS)
    d = tl.load(draws_ptr + j * 2 * DRAWS)
    if _kept(part_ptr, b, m, fac, 0, d, amax, p, total, DRAWS):
        tl.store(out_ptr + j, d)
        tl.store(valid_ptr + j, True)   # a decided row is valid
        tl.store(st_ptr + j, -2)
    else:
        _draw_round(0, 1, x_ptr, row_off, V, C, _row_log_mass(pf_ptr, j, C, ref, inv_t,
                                                              FROM_LOGITS, CP2),
                    INT_MIN, INT_MAX, tl.load(seed_ptr + j * seed_step),
                    tl.load(off_ptr + j * off_step), stream_of(j, STREAM_IS_POS), ref, mul,
                    draws_ptr + j * 2 * DRAWS, FROM_LOGITS, CP2, CHUNK, DRAWS, DRAWS - 1)


@triton.jit
def decide_round(j, k, x_ptr, row_off, V, C, pi_ptr, pf_ptr, draws_ptr, st_ptr, part_ptr,
                 seed_ptr, seed_step, off_ptr, off_step, out_ptr, valid_ptr, p, inv_t,
                 FROM_LOGITS: tl.constexpr, STREAM_IS_POS: tl.constexpr, CP2: tl.constexpr,
                 CHUNK: tl.constexpr, BLOCK: tl.constexpr, DRAWS: tl.constexpr,
                 ROUNDS: tl.constexpr):
    """Output j after round k: the first kept draw (the mass before it below
    ``top_p * W``, or it is the first of the order) is the token. If none is,
    every kept token lies before the earliest draw: the next round draws from
    those tokens (their chunk masses are that draw's sums), and after the last
    round the race over the kept tokens runs in this program (``final_race``:
    at most 8 + 1 passes and one chunk)."""
    bad, kmax, kmin, amax, n_pos, n_max, vmax, ref, mul, total = combine_stats(
        pi_ptr, pf_ptr, j, C, inv_t, FROM_LOGITS, CP2)
    r = tl.arange(0, DRAWS)
    d = tl.load(draws_ptr + j * 2 * DRAWS + r)
    cc = tl.arange(0, CP2)
    m = cc < C
    b = (j * C + cc).to(tl.int64)
    fac = _to_row_scale(pf_ptr, b, m, ref, mul, inv_t, FROM_LOGITS)
    part = tl.load(part_ptr + b[:, None] * DRAWS + r[None, :], mask=m[:, None], other=0.0)
    first = tl.full([], DRAWS, tl.int32)
    for q in tl.static_range(DRAWS):
        dq = tl.sum(tl.where(r == q, d, 0))
        kept = _kept(part_ptr, b, m, fac, q, dq, amax, p, total, DRAWS)
        first = tl.where((first == DRAWS) & kept, q, first)
    seed = tl.load(seed_ptr + j * seed_step)
    offset = tl.load(off_ptr + j * off_step)
    stream = stream_of(j, STREAM_IS_POS)
    if first < DRAWS:
        tl.store(out_ptr + j, tl.sum(tl.where(r == first, d, 0)))
        tl.store(valid_ptr + j, k >= 0)   # a decided row is valid
        tl.store(st_ptr + j, -2 - k)
    else:
        dkey = tl.load(draws_ptr + j * 2 * DRAWS + DRAWS + r)
        top = tl.max(dkey)
        early = tl.min(tl.where(dkey == top, d, INT_MAX))
        if k + 1 < ROUNDS:
            # The chunk masses of the tokens before the earliest draw (one
            # column: a token drawn twice has two equal ones).
            pick = r == tl.min(tl.where(d == early, r, DRAWS))
            mass = tl.sum(tl.where(pick[None, :], part, 0.0), axis=1) * fac
            log_mass = tl.where(mass > 0.0, tl.log(mass), float("-inf"))
            _draw_round(k + 1, 0, x_ptr, row_off, V, C, log_mass, top, early - 1, seed, offset,
                        stream, ref, mul, draws_ptr + j * 2 * DRAWS, FROM_LOGITS, CP2, CHUNK, DRAWS,
                        DRAWS)
            tl.store(st_ptr + j, k + 1)
        else:
            token = final_race(x_ptr, row_off, V, p, kmax, kmin, amax, n_pos, ref, mul, total,
                               seed, offset, stream, FROM_LOGITS, BLOCK, CHUNK, CP2)
            tl.store(out_ptr + j, token)
            tl.store(valid_ptr + j, k >= 0)   # a decided row is valid
            tl.store(st_ptr + j, -2 - ROUNDS)


@triton.jit
def _bisect(gk, gw, lo, hi, target_c, target_m, USE_MASS: tl.constexpr, STEPS: tl.constexpr):
    """A key x in [lo, hi] with count (or mass) of group maxima >= x reaching
    the target (or ``lo``), at most ``(hi - lo) / 2**STEPS`` below the
    largest such key: after STEPS halvings ``lo`` still reaches the target
    and ``hi`` is that close (32 halvings: exactly the largest). The plan needs a bound, not the exact
    largest key: every token at or above it is a candidate, and select_row
    ranks the candidates exactly."""
    lo = lo.to(tl.int64)
    hi = hi.to(tl.int64)
    for _ in tl.static_range(STEPS):
        mid = (lo + hi + 1) // 2
        ge = gk >= mid.to(tl.int32)   # lo <= mid <= hi: in int32 range
        if USE_MASS:
            enough = tl.sum(tl.where(ge, gw, 0.0)) >= target_m
        else:
            enough = tl.sum(ge.to(tl.int32)) >= target_c
        lo = tl.where(enough & (lo < hi), mid, lo)
        hi = tl.where(~enough & (lo < hi), mid - 1, hi)
    return lo


@triton.jit
def plan_row(j, pi_ptr, pf_ptr, gm_ptr, plan_ptr, gl_ptr, V, C, B, idx_ptr, stride_row, k_ptr,
             k_val, p_ptr, p_val, t_ptr, t_val, st_ptr, HAS_INDICES: tl.constexpr,
             FROM_LOGITS: tl.constexpr, HAS_K: tl.constexpr, K_ROW: tl.constexpr,
             HAS_P: tl.constexpr, P_ROW: tl.constexpr, T_ROW: tl.constexpr,
             JOINT: tl.constexpr, CP2: tl.constexpr, GP2: tl.constexpr,
             G_PER_CHUNK: tl.constexpr, BRACKET: tl.constexpr, NS: tl.constexpr,
             MIXED: tl.constexpr):
    """Output j: the candidate bracket ``plan[j] = (lo, hi)`` (run by the last
    of its row's ``stats_kernel`` programs), and its candidate count
    ``plan[j * 4 + 3]`` set to 0 for ``compact_kernel``.

    Candidates are the tokens with ``lo <= key <= hi``; ``lo = INT_MAX`` when
    the row needs none. Without BRACKET, ``hi = INT_MAX`` (every token from
    ``lo`` up), and the groups whose maxima reach ``lo`` (those holding the
    candidates) are listed in ascending order at ``gl_ptr + j * C * G``, their
    number in ``plan[j * 4 + 2]``: ``compact_kernel`` reads those groups
    only, a slice of the list a program. With BRACKET (top-p alone),
    ``hi = kmax`` with the token count unknown; this fills the NS state slots
    of ``hist_kernel`` with it (a row whose bracket is empty, ``lo >= hi``,
    is then skipped by every pass). BISECT_STEPS (20) halvings over the
    group maxima, each a count (or mass) over all of them: the bound may sit
    up to 2**12 keys below the largest valid one (``_bisect``); 32 with
    BRACKET, exact.

    With MIXED (per-request top-k with top-p, no min-p), an output whose
    top-k is off is top-p alone and draws by rejection: it gets no
    candidates, and its state ``st[j]`` is 0 (open for ``draw_kernel`` and
    the ``check_kernel`` rounds); every other output's is -1 (answered by
    ``select_row``).
    """
    ok, _off, k, p, _m, greedy, inv_t = request(
        j, idx_ptr, B, stride_row, k_ptr, k_val, p_ptr, p_val, k_ptr, 0.0, t_ptr, t_val,
        HAS_INDICES, HAS_K, K_ROW, HAS_P, P_ROW, False, False, FROM_LOGITS, T_ROW)
    bad, kmax, kmin, amax, n_pos, n_max, vmax, ref, mul, total = combine_stats(
        pi_ptr, pf_ptr, j, C, inv_t, FROM_LOGITS, CP2)
    ok &= (bad == 0) & (n_pos > 0) & ~greedy
    k_on = HAS_K & (k > 0) & (k < n_pos)
    p_on = HAS_P & (p < 1.0)
    bound = tl.full([], INT_MAX, tl.int64)
    n_groups = tl.zeros([], tl.int32)
    # (MIXED: top-p given, no min-p.) At top-p 1 the row is plain, and
    # select_row races it: rejection would keep its first draw, the same token.
    opened = MIXED & ok & ~((k > 0) & (k < V)) & (p < 1.0)
    if MIXED:
        tl.store(st_ptr + j, tl.where(opened, 0, -1))
    if ok & (k_on | p_on) & ~opened:
        g = tl.arange(0, GP2)
        gk = tl.load(gm_ptr + j.to(tl.int64) * C * G_PER_CHUNK + g, mask=g < C * G_PER_CHUNK,
                     other=INT_MIN)
        bound = kmin.to(tl.int64)
        if k_on:
            # k groups whose maxima reach L hold at least k tokens >= L.
            bound = _bisect(gk, gk.to(tl.float32), kmin, kmax, k, 0.0, False, BISECT_STEPS)
        if p_on & (JOINT | ~k_on):
            gw = row.weight(row.key_value(gk, FROM_LOGITS), gk > INT_MIN, ref, mul, FROM_LOGITS)
            # Group maxima alone reach the target: so do all tokens >= L. The
            # margin absorbs float32 rounding between this sum and select's.
            target = p * total * (1.0 + 1e-5) + 1e-30
            if BRACKET:
                # Exact for the histogram path: a row whose largest token
                # alone reaches p gets the empty bracket lo = hi = kmax, and
                # every pass skips it.
                bp = _bisect(gk, gw, kmin, kmax, 0, target, True, 32)
            else:
                bp = _bisect(gk, gw, kmin, kmax, 0, target, True, BISECT_STEPS)
            bound = tl.maximum(bound, bp)
        if not BRACKET:
            need = gk >= bound.to(tl.int32)   # past the row: INT_MIN, below any bound
            ranked = need.to(tl.int32)
            slot = tl.cumsum(ranked, axis=0) - ranked
            tl.store(gl_ptr + j.to(tl.int64) * C * G_PER_CHUNK + slot, g, mask=need)
            n_groups = tl.sum(ranked)
    hi = INT_MAX
    if BRACKET:
        hi = tl.where(bound < INT_MAX, kmax, INT_MAX)
    tl.store(plan_ptr + j * 4, bound.to(tl.int32))
    tl.store(plan_ptr + j * 4 + 1, hi)
    tl.store(plan_ptr + j * 4 + 2, n_groups)
    tl.store(plan_ptr + j * 4 + 3, 0)   # the candidate count compact_kernel adds to
    if BRACKET:
        for q in tl.static_range(NS):
            at = (j * NS + q).to(tl.int64) * 4
            tl.store(st_ptr + at, bound.to(tl.int32))
            tl.store(st_ptr + at + 1, hi)
            tl.store(st_ptr + at + 2, INT_MAX)


@triton.jit
def _chunk_scale(pf_ptr, base, inv_t, FROM_LOGITS: tl.constexpr):
    """(shift, factor): a chunk's own weights are ``exp((v - shift) * inv_t)``
    (logits) or ``v * factor`` (probs), as in ``stats_kernel``."""
    cm = tl.load(pf_ptr + base * NF)
    shift = tl.where(cm == float("-inf"), 0.0, cm)
    factor = row.pow2(-tl.load(pf_ptr + base * NF + 1).to(tl.int32))
    return shift, factor


@triton.jit
def _local_weight(v, keep, shift, factor, inv_t, FROM_LOGITS: tl.constexpr):
    if FROM_LOGITS:
        return tl.where(keep, tl.exp((v - shift) * inv_t), 0.0)
    else:
        return tl.where(keep, v * factor, 0.0)


@triton.jit
def _to_row_scale(pf_ptr, b, m, ref, mul, inv_t, FROM_LOGITS: tl.constexpr):
    """Factors that turn chunk-scale masses (``_local_weight``) into row-scale ones."""
    if FROM_LOGITS:
        cm = tl.load(pf_ptr + b * NF, mask=m, other=float("-inf"))
        return tl.where(cm > float("-inf"), tl.exp((cm - ref) * inv_t), 0.0)
    else:
        # 2**(e_c - e_row) in one step: 2**e_c alone is 0 for a chunk of
        # denormals (e_c = -127), whose mass would vanish. mul = 2**-e_row.
        e = tl.load(pf_ptr + b * NF + 1, mask=m, other=-127.0).to(tl.int32)
        minus_e_row = ((mul.to(tl.int32, bitcast=True) >> 23) & 0xFF) - 127
        return row.pow2(e + minus_e_row)


@triton.jit
def _store_candidates(cand_ptr, j, CAP: tl.constexpr, key, cols, sel, slot):
    """Selected tokens into row j's candidate slots (those past CAP dropped),
    packed as (key << 32) | (2**32 - 1 - index): one descending sort gives
    the exact order, ties to the lower index."""
    packed = (key.to(tl.int64) << 32) | (0xFFFFFFFF - cols.to(tl.int64))
    tl.store(cand_ptr + j.to(tl.int64) * CAP + slot, packed, mask=(sel > 0) & (slot < CAP))


@triton.jit(do_not_specialize=_SIZES)
def compact_kernel(x_ptr, stride_row, V, B, C, idx_ptr, pi_ptr, pf_ptr, gm_ptr, plan_ptr,
                   gl_ptr, cand_ptr, above_ptr, n_above_ptr, arrived_ptr, seed_ptr,
                   seed_step, off_ptr, off_step, out_ptr, valid_ptr, k_ptr, k_val, p_ptr, p_val,
                   mp_ptr, mp_val, t_ptr, t_val, HAS_INDICES: tl.constexpr,
                   FROM_LOGITS: tl.constexpr, HAS_K: tl.constexpr, K_ROW: tl.constexpr,
                   HAS_P: tl.constexpr, P_ROW: tl.constexpr, HAS_MINP: tl.constexpr,
                   MINP_ROW: tl.constexpr, T_ROW: tl.constexpr, JOINT: tl.constexpr,
                   STREAM_IS_POS: tl.constexpr, CP2: tl.constexpr, CAP: tl.constexpr,
                   BLOCK: tl.constexpr, CHUNK: tl.constexpr, GROUP: tl.constexpr,
                   BRACKET: tl.constexpr, SELECT: tl.constexpr, MIXED: tl.constexpr):
    """Program (j, c): append tokens with ``lo <= key <= hi`` to row j's
    candidate buffer. With SELECT the row's last program to finish then draws
    its token (``select_row``); without, ``select_kernel`` does.

    Only the groups (32 tokens; 8 or 16 for a large top-k) whose largest
    key (``stats_kernel``) reaches ``lo`` are read: the others hold no
    candidate and nothing above ``hi``.
    Without BRACKET (top-k, joint; ``hi = INT_MAX``) program c reads groups
    ``c * G .. c * G + G - 1`` of the row's list of such groups (``plan_row``;
    G = CHUNK / GROUP); for top-k 50 that is about 50 groups, so one program
    a row works and the others return after one load. Reading chunk c and
    masking off the groups below ``lo`` took as long as reading the whole
    row (105 µs at B=256 on an H200): every program kept 4096 lanes busy.
    With BRACKET (top-p alone, the bracket narrowed by the histogram passes)
    program c reads chunk c's groups that reach ``lo`` and also stores the
    count and mass (chunk scale) of its tokens above ``hi``, which are kept
    for sure.

    The slot range comes from one atomic add on the row's count
    (``plan[j * 4 + 3]``, never a wait); slots past CAP are dropped and the
    count records the overflow.
    One pass over at most one chunk's worth of tokens a program.
    """
    j = tl.program_id(0)
    c = tl.program_id(1)
    lo = tl.load(plan_ptr + j * 4)
    hi = tl.load(plan_ptr + j * 4 + 1)
    above = tl.zeros([], tl.float32)
    n_above = tl.zeros([], tl.int32)
    if BRACKET:
        # A chunk whose largest key is below the bracket has nothing to give.
        if (lo < INT_MAX) & (tl.load(pi_ptr + (j * C + c).to(tl.int64) * NI + 1) >= lo):
            ok, row_off, _k, _p, _m, greedy, inv_t = request(
                j, idx_ptr, B, stride_row, t_ptr, 0, t_ptr, 1.0, t_ptr, 0.0, t_ptr, t_val,
                HAS_INDICES, False, False, False, False, False, False, FROM_LOGITS, T_ROW)
            cols = c * CHUNK + tl.arange(0, CHUNK)
            base = (j * C + c).to(tl.int64) * (CHUNK // GROUP)
            need = tl.load(gm_ptr + base + tl.arange(0, CHUNK) // GROUP) >= lo
            v, inb = row.load_where(x_ptr, row_off, cols, V, need, FROM_LOGITS)
            key = row.order_key(v, FROM_LOGITS)
            pos = row.positive(v, inb, FROM_LOGITS)
            sel = (pos & (key >= lo) & (key <= hi)).to(tl.int32)
            n = tl.sum(sel)
            if n > 0:
                start = tl.atomic_add(plan_ptr + j * 4 + 3, n, sem="relaxed")   # as the bins
                slot = start + tl.cumsum(sel, axis=0) - sel
                _store_candidates(cand_ptr, j, CAP, key, cols, sel, slot)
            shift, factor = _chunk_scale(pf_ptr, (j * C + c).to(tl.int64), inv_t, FROM_LOGITS)
            above = tl.sum(_local_weight(v, pos & (key > hi), shift, factor, inv_t, FROM_LOGITS))
            n_above = tl.sum((pos & (key > hi)).to(tl.int32))
    else:
        G: tl.constexpr = CHUNK // GROUP
        n_groups = tl.load(plan_ptr + j * 4 + 2)
        if c * G < n_groups:
            ok, row_off, _k, _p, _m, greedy, inv_t = request(
                j, idx_ptr, B, stride_row, t_ptr, 0, t_ptr, 1.0, t_ptr, 0.0, t_ptr, t_val,
                HAS_INDICES, False, False, False, False, False, False, FROM_LOGITS, T_ROW)
            s = c * G + tl.arange(0, G)
            live = s < n_groups
            group = tl.load(gl_ptr + j.to(tl.int64) * C * G + s, mask=live, other=0)
            cols = group[:, None] * GROUP + tl.arange(0, GROUP)[None, :]   # [G, GROUP]
            v, inb = row.load_where(x_ptr, row_off, cols, V, live[:, None], FROM_LOGITS)
            key = row.order_key(v, FROM_LOGITS)
            sel = (row.positive(v, inb, FROM_LOGITS) & (key >= lo)).to(tl.int32)
            per_group = tl.sum(sel, axis=1)
            n = tl.sum(per_group)
            if n > 0:
                start = tl.atomic_add(plan_ptr + j * 4 + 3, n, sem="relaxed")
                slot = (start + (tl.cumsum(per_group, axis=0) - per_group)[:, None]
                        + tl.cumsum(sel, axis=1) - sel)
                _store_candidates(cand_ptr, j, CAP, key, cols, sel, slot)
    if BRACKET:
        tl.store(above_ptr + (j * C + c).to(tl.int64), above)
        tl.store(n_above_ptr + (j * C + c).to(tl.int64), n_above)
    if SELECT:
        if arrive(arrived_ptr + j, C):
            select_row(j, x_ptr, stride_row, V, B, C, idx_ptr, pi_ptr, pf_ptr, plan_ptr,
                       cand_ptr, above_ptr, n_above_ptr, seed_ptr, seed_step, off_ptr,
                       off_step, out_ptr, valid_ptr, k_ptr, k_val, p_ptr, p_val, mp_ptr, mp_val,
                       t_ptr, t_val, HAS_INDICES, FROM_LOGITS, HAS_K, K_ROW, HAS_P, P_ROW,
                       HAS_MINP, MINP_ROW, T_ROW, JOINT, STREAM_IS_POS, CP2, CAP, BLOCK, CHUNK,
                       BRACKET, MIXED)


@triton.jit
def _chunk_masses(keep, w, idx, C, CP2: tl.constexpr, CHUNK: tl.constexpr):
    """Kept candidate mass per chunk (a CP2 vector), one chunk at a time."""
    ch = idx // CHUNK
    cc = tl.arange(0, CP2)
    mass = tl.zeros([CP2], tl.float32)
    for c in range(C):
        mass = tl.where(cc == c, tl.sum(tl.where(keep & (ch == c), w, 0.0)), mass)
    return mass


@triton.jit
def _select_bracket(x_ptr, row_off, V, C, j, pf_ptr, cand_ptr, above_ptr, n_above_ptr, count,
                    n_pos, p, total, ref, mul, inv_t, seed, offset, stream,
                    FROM_LOGITS: tl.constexpr, CP2: tl.constexpr, CAP: tl.constexpr,
                    CHUNK: tl.constexpr, SIZE: tl.constexpr):
    """Top-p alone: the tokens above the bracket are kept; the sorted bracket
    candidates continue the prefix; the race reads the chosen chunk.
    Returns ``(token, fallback)``: fallback when the prefix may end outside
    the bracket (the histogram bounds only steer, and float32 sums round), on
    either side. SIZE >= count slots are sorted."""
    s = tl.arange(0, SIZE)
    live = s < count
    packed = tl.load(cand_ptr + j.to(tl.int64) * CAP + s, mask=live, other=-9223372036854775808)
    packed = tl.sort(packed, descending=True)
    key = (packed >> 32).to(tl.int32)
    idx = (0xFFFFFFFF - (packed & 0xFFFFFFFF)).to(tl.int32)
    w = row.weight(row.key_value(key, FROM_LOGITS), live, ref, mul, FROM_LOGITS)
    cc = tl.arange(0, CP2)
    m = cc < C
    b = (j * C + cc).to(tl.int64)
    above = tl.load(above_ptr + b, mask=m, other=0.0) * _to_row_scale(pf_ptr, b, m, ref, mul,
                                                                       inv_t, FROM_LOGITS)
    n_above = tl.sum(tl.load(n_above_ptr + b, mask=m, other=0))
    before = tl.sum(above) + tl.cumsum(w, axis=0) - w
    in_prefix = before < p * total
    keep = live & (in_prefix | ((s == 0) & (n_above == 0)))
    n_keep = tl.sum(keep.to(tl.int32))
    # The bracket may miss the threshold: above it (the sure mass alone
    # reaches the target, n_keep == 0) or below it (the prefix is still short
    # after the last candidate while tokens remain below the bracket).
    short = tl.sum(above) + tl.sum(w) < p * total
    fallback = (n_keep == 0) | (short & (count + n_above < n_pos))
    t = tl.sum(tl.where(s == n_keep - 1, key, 0))
    last = tl.sum(tl.where(s == n_keep - 1, idx, 0))
    chunk = tl.zeros([], tl.int32)
    if C > 1:
        mass = above + _chunk_masses(keep, w, idx, C, CP2, CHUNK)
        chunk = pick_chunk(tl.where(mass > 0.0, tl.log(mass), float("-inf")), cc, m, seed,
                           offset, stream, 0)
    token = race_in_chunk(x_ptr, row_off, V, chunk, float("-inf"), t, last, seed, offset, stream,
                          ref, mul, 0, FROM_LOGITS, CHUNK)
    return token, fallback


@triton.jit
def _select_filtered(cand_ptr, j, count, k, p, mp, k_on, p_on, n_pos, vmax, ref, mul, total, C,
                     seed, offset, stream, FROM_LOGITS: tl.constexpr, HAS_P: tl.constexpr,
                     HAS_MINP: tl.constexpr, JOINT: tl.constexpr, CP2: tl.constexpr,
                     CAP: tl.constexpr, CHUNK: tl.constexpr, SIZE: tl.constexpr):
    """Top-k and joint: the kept set among the row's ``count <= SIZE``
    candidates by the filters of docs/semantics.md, then the race over it.
    With top-p (HAS_P) the candidates are sorted, for the prefix sums. Top-k
    alone (with or without min-p) needs no order, only the k-th largest
    candidate: above 256 slots ``_top_k_of`` finds it by search. The sort
    of 2048 slots took most of top-k 1000's time (select 45 of 57 µs at
    B=1, V=32000); the search cut the call to 61 µs under graph replay. At
    256 slots the sort is the faster (top-k 50's select 14 µs sorted, 25 by
    search, B=256, V=128256; H100, fourteenth session). Returns ``(token,
    fallback)``: fallback when rounding might carry the top-p prefix past
    the last candidate."""
    # Chunks a reduction in the kept masses: fewer at larger sizes, whose
    # registers set the whole select launch's (benchmarks/registers.py).
    G_MASS: tl.constexpr = 4 if SIZE <= 256 else (2 if SIZE <= 2048 else 1)
    SORTED: tl.constexpr = True if HAS_P else SIZE <= 256
    fallback = tl.zeros([], tl.int1)
    s = tl.arange(0, SIZE)
    live = s < count
    packed = tl.load(cand_ptr + j.to(tl.int64) * CAP + s, mask=live,
                     other=-9223372036854775808)
    if SORTED:
        packed = tl.sort(packed, descending=True)
    key = (packed >> 32).to(tl.int32)
    idx = (0xFFFFFFFF - (packed & 0xFFFFFFFF)).to(tl.int32)
    v = row.key_value(key, FROM_LOGITS)
    w = row.weight(v, live, ref, mul, FROM_LOGITS)
    keep = live
    if SORTED:
        w_ref = total
        if k_on:
            keep &= s < k
            if HAS_P:
                if not JOINT:
                    w_ref = tl.sum(tl.where(keep, w, 0.0))
        if HAS_P:
            if p_on:
                target = p * w_ref
                before = tl.cumsum(w, axis=0) - w
                keep &= (before < target) | (s == 0)
                # Every candidate kept by top-p and tokens remain outside: the
                # prefix might continue past them (rounding); go the long way.
                last_kept = tl.sum(tl.where(s == count - 1, (before < target).to(tl.int32), 0))
                fallback = (last_kept > 0) & (count < n_pos) & ~(k_on & (k <= count))
    elif k_on:
        keep = _top_k_of(cand_ptr, j.to(tl.int64) * CAP, count, key, idx, live, k, SIZE)
    if HAS_MINP:
        keep &= v >= _min_p_floor(mp, vmax)
    if C > 1:
        # Stage one of the race: kept mass per chunk.
        mass = _kept_chunk_masses(keep, w, idx, C, CP2, CHUNK, G_MASS)
        cc = tl.arange(0, CP2)
        log_mass = tl.where(mass > 0.0, tl.log(mass), float("-inf"))
        keep &= idx // CHUNK == pick_chunk(log_mass, cc, cc < C, seed, offset, stream, 0)
    e = trng.exponential(trng.token_bits(idx, seed, offset, stream, 0))
    race = tl.where(keep, race_key(v, e, ref, mul, FROM_LOGITS), float("-inf"))
    best = tl.max(race)
    token = tl.min(tl.where(keep & (race == best), idx, INT_MAX))
    return token, fallback


@triton.jit
def _top_k_of(cand_ptr, base, count, key, idx, live, k, SIZE: tl.constexpr):
    """Mask of the ``k`` largest live candidates in the exact order (key
    descending, then index ascending), found without sorting: the k-th
    largest key ``t``, then, if ``t`` has more ties than places left, the
    needed ones with the lowest indices (the largest packed low words
    ``2**32 - 1 - index``). Each is a 16-way search over the row's
    candidates (``_largest_reaching``): at most 8 + 8 passes over them, none
    over the row. Every live candidate is kept when ``k`` reaches their
    number."""
    n = tl.sum(live.to(tl.int32))
    kk = tl.minimum(k, n)
    # (Keys are int32 and low words below 2**32, so hi - lo < 2**32; with
    # nothing live, hi < lo and no pass runs.)
    t = _largest_reaching(cand_ptr, base, count, 0,
                          tl.min(tl.where(live, key, INT_MAX)).to(tl.int64),
                          tl.max(tl.where(live, key, INT_MIN)).to(tl.int64), kk, False, SIZE)
    t = t.to(tl.int32)
    above = live & (key > t)
    tie = live & (key == t)
    need = kk - tl.sum(above.to(tl.int32))
    last = tl.max(tl.where(tie, idx, -1))   # the last tie kept, by index
    if need < tl.sum(tie.to(tl.int32)):
        u = _largest_reaching(cand_ptr, base, count, t,
                              0xFFFFFFFF - tl.max(tl.where(tie, idx, 0)).to(tl.int64),
                              0xFFFFFFFF - tl.min(tl.where(tie, idx, INT_MAX)).to(tl.int64),
                              need, True, SIZE)
        last = (0xFFFFFFFF - u).to(tl.int32)
    return above | (tie & (idx <= last))


@triton.jit
def _largest_reaching(cand_ptr, base, count, t, lo, hi, target, TIES: tl.constexpr,
                      SIZE: tl.constexpr):
    """The largest ``x`` in ``[lo, hi]`` (int64, ``hi - lo < 2**32``) such
    that at least ``target`` of the row's ``count`` packed candidates (at
    ``cand_ptr + base``) have key ``>= x``, or, with TIES, have key ``t``
    and low word ``>= x``; ``lo`` must qualify. Each pass tests 16 pivots
    and keeps the sixteenth of the interval holding the answer, so the
    passes are the hex digits of ``hi - lo``, at most 8, fixed before the
    loop (as row.search). A pass reads the candidates again, R at a time
    (they are in L1), so that the comparisons take [R, 16] registers, not
    [SIZE, 16]. R = 128, not 256: at 256 the top-k select kernel spilled
    (32 bytes of stack) and even top-k 50's select, which never searches,
    slowed from 13.5 to 16.5 µs; at 128 it takes 10, and top-k 1000's 43
    instead of 69 (B=256, V=128256; H200, fifteenth session)."""
    R: tl.constexpr = 128 if SIZE > 128 else SIZE
    n_pass = tl.zeros([], tl.int32)
    for d in tl.static_range(8):
        n_pass += ((hi - lo) >> (4 * d) > 0).to(tl.int32)
    jj = tl.arange(0, 16).to(tl.int64)
    r = tl.arange(0, R)
    for _ in range(n_pass):
        piv = lo + ((hi - lo + 1) * jj) // 16
        acc = tl.zeros([R, 16], tl.int32)
        for b in range(0, count, R):
            m = b + r < count
            packed = tl.load(cand_ptr + base + b + r, mask=m, other=0)
            if TIES:
                m &= (packed >> 32) == t
                vals = packed & 0xFFFFFFFF
            else:
                vals = packed >> 32
            acc += ((vals[:, None] >= piv[None, :]) & m[:, None]).to(tl.int32)
        cnt = tl.sum(acc, axis=0)
        jb = tl.max(tl.where((cnt >= target) | (jj == 0), jj, 0))
        nxt = tl.sum(tl.where(jj == jb + 1, piv, 0))
        hi = tl.where(jb + 1 < 16, nxt - 1, hi)
        lo = tl.sum(tl.where(jj == jb, piv, 0))
    return lo


@triton.jit
def _kept_chunk_masses(keep, w, idx, C, CP2: tl.constexpr, CHUNK: tl.constexpr,
                       G: tl.constexpr):
    """Kept candidate mass per chunk (a CP2 vector of float32), summed
    exactly in fixed point, so that it does not depend on the candidates'
    order in the buffer (compact_kernel's atomics set it): select needs no
    sort for that. Units of 2**-48 of the row's weight scale: a weight is
    below 4 (row.weight: below 2 unless the row's largest prob is 2**127 or
    more, where row.exponent stops at 126) and at most CAP = 4096 are
    summed, so a sum stays below 2**62. Each weight loses what lies below
    2**-48, so a chunk's mass is off by at most 2**-36 of the row's largest
    weight: a chunk whose kept weights all lie below 2**-48 gets mass 0,
    where its chance is below 2**-36 (independent review, fourteenth
    session). G chunks a reduction: one cross-thread sum serves G chunks,
    for [SIZE, G] int64 registers."""
    q = tl.where(keep, (w * 281474976710656.0).to(tl.int64), 0)   # w * 2**48
    ch = idx // CHUNK
    g = tl.arange(0, G)
    cc = tl.arange(0, CP2)
    mass = tl.zeros([CP2], tl.int64)
    for c0 in range(0, C, G):
        part = tl.sum(tl.where(ch[:, None] == (c0 + g)[None, :], q[:, None], 0), axis=0)
        mass += tl.sum(tl.where(cc[:, None] == (c0 + g)[None, :], part[None, :], 0), axis=1)
    return mass.to(tl.float32) * 3.552713678800501e-15   # 2**-48


@triton.jit
def select_row(j, x_ptr, stride_row, V, B, C, idx_ptr, pi_ptr, pf_ptr, plan_ptr,
               cand_ptr, above_ptr, n_above_ptr, seed_ptr, seed_step, off_ptr, off_step, out_ptr,
               valid_ptr, k_ptr, k_val, p_ptr, p_val, mp_ptr, mp_val, t_ptr, t_val,
               HAS_INDICES: tl.constexpr, FROM_LOGITS: tl.constexpr, HAS_K: tl.constexpr,
               K_ROW: tl.constexpr, HAS_P: tl.constexpr, P_ROW: tl.constexpr,
               HAS_MINP: tl.constexpr, MINP_ROW: tl.constexpr, T_ROW: tl.constexpr,
               JOINT: tl.constexpr, STREAM_IS_POS: tl.constexpr, CP2: tl.constexpr,
               CAP: tl.constexpr, BLOCK: tl.constexpr, CHUNK: tl.constexpr,
               BRACKET: tl.constexpr, MIXED: tl.constexpr):
    """Output j (run by the last of its row's ``compact_kernel`` programs):
    the kept candidates (sorted for top-p's prefix; top-k alone by search),
    then the race.

    Without BRACKET every kept token is a candidate and the race runs over
    them. With BRACKET (top-p alone) the tokens above the bracket are kept for
    sure: their mass starts the prefix sum, and the race reads the chosen chunk.
    Worst case (overflow): the single-program path, 1-16 search passes + 2.
    A row with no filter left (top-k off or at least its positive tokens,
    top-p absent or 1, min-p off) races from the stats' chunk masses, in
    float32 as plain sampling does: one chunk read.
    With MIXED, an output that ``plan_row`` opened for rejection (top-k
    off, so top-p alone) is left to ``draw_kernel`` and ``check_kernel``:
    nothing is stored for it here.
    """
    ok, row_off, k, p, mp, greedy, inv_t = request(
        j, idx_ptr, B, stride_row, k_ptr, k_val, p_ptr, p_val, mp_ptr, mp_val, t_ptr, t_val,
        HAS_INDICES, HAS_K, K_ROW, HAS_P, P_ROW, HAS_MINP, MINP_ROW, FROM_LOGITS, T_ROW)
    bad, kmax, kmin, amax, n_pos, n_max, vmax, ref, mul, total = combine_stats(
        pi_ptr, pf_ptr, j, C, inv_t, FROM_LOGITS, CP2)
    ok &= (bad == 0) & (n_pos > 0)
    token = amax
    # plan_row's condition for st[j] = 0, from the same values.
    opened = MIXED & ok & ~greedy & ~((k > 0) & (k < V)) & (p < 1.0)
    if ok & ~greedy & ~opened:
        seed = tl.load(seed_ptr + j * seed_step)
        offset = tl.load(off_ptr + j * off_step)
        count = tl.load(plan_ptr + j * 4 + 3)
        bound = tl.load(plan_ptr + j * 4)
        k_on = HAS_K & (k > 0) & (k < n_pos)
        p_on = HAS_P & (p < 1.0)
        stream = stream_of(j, STREAM_IS_POS)
        # No filter left (top-k at least the positive tokens, as masked
        # logits give; top-p 1): plain sampling, the race from the stats'
        # chunk masses (one chunk read), not the single-program path.
        plain = ~k_on & ~p_on
        if HAS_MINP:
            plain &= ~(mp > 0.0)
        fallback = (bound == INT_MAX) | (count > CAP)
        # Rows whose only filter is top-p (below 1) draw by rejection:
        # without MIXED (ROCm, or min-p given) through the single-program
        # path (kernels.reject_row). At top-p 1 rejection keeps its first
        # draw, which is the plain race's: those rows are ``plain``.
        fallback |= top_p_alone(k, mp, V, HAS_K, HAS_P, HAS_MINP)
        # The sort is sized to the candidates (top-k/joint: 256, 2048 or CAP
        # slots; the top-p bracket: 2048 or CAP); one branch runs.
        SMALL: tl.constexpr = 256 if CAP > 256 else CAP
        MID: tl.constexpr = 2048 if CAP > 2048 else CAP
        if plain:
            token = two_stage_race(j, x_ptr, row_off, V, C, pf_ptr, pf_ptr + 2, NF, float("-inf"),
                                   ref, mul, inv_t, seed, offset, stream, FROM_LOGITS, CP2, CHUNK)
        elif BRACKET & ~fallback:
            if count <= MID:
                token, fallback = _select_bracket(
                    x_ptr, row_off, V, C, j, pf_ptr, cand_ptr, above_ptr, n_above_ptr, count,
                    n_pos, p, total, ref, mul, inv_t, seed, offset, stream, FROM_LOGITS, CP2, CAP,
                    CHUNK, MID)
            else:
                token, fallback = _select_bracket(
                    x_ptr, row_off, V, C, j, pf_ptr, cand_ptr, above_ptr, n_above_ptr, count,
                    n_pos, p, total, ref, mul, inv_t, seed, offset, stream, FROM_LOGITS, CP2, CAP,
                    CHUNK, CAP)
        elif ~fallback:
            if count <= SMALL:
                token, fallback = _select_filtered(
                    cand_ptr, j, count, k, p, mp, k_on, p_on, n_pos, vmax, ref, mul, total, C,
                    seed, offset, stream, FROM_LOGITS, HAS_P, HAS_MINP, JOINT, CP2, CAP, CHUNK, SMALL)
            elif count <= MID:
                token, fallback = _select_filtered(
                    cand_ptr, j, count, k, p, mp, k_on, p_on, n_pos, vmax, ref, mul, total, C,
                    seed, offset, stream, FROM_LOGITS, HAS_P, HAS_MINP, JOINT, CP2, CAP, CHUNK, MID)
            else:
                token, fallback = _select_filtered(
                    cand_ptr, j, count, k, p, mp, k_on, p_on, n_pos, vmax, ref, mul, total, C,
                    seed, offset, stream, FROM_LOGITS, HAS_P, HAS_MINP, JOINT, CP2, CAP, CHUNK, CAP)
        if fallback & ~plain:
            token = sample_row(x_ptr, row_off, V, j, k, p, mp, kmax, kmin, amax, n_pos, vmax,
                               ref, mul, total, seed, offset, HAS_K, HAS_P, HAS_MINP, JOINT,
                               STREAM_IS_POS, FROM_LOGITS, BLOCK, CHUNK, CP2)
    if ~opened:
        tl.store(out_ptr + j, tl.where(ok, token, 0).to(tl.int32))
        tl.store(valid_ptr + j, ok)


@triton.jit(do_not_specialize=_SIZES + ["V"])
def plan_kernel(pi_ptr, pf_ptr, gm_ptr, plan_ptr, gl_ptr, V, C, B, idx_ptr, stride_row, k_ptr,
                k_val, p_ptr, p_val, t_ptr, t_val, st_ptr, HAS_INDICES: tl.constexpr,
                FROM_LOGITS: tl.constexpr, HAS_K: tl.constexpr, K_ROW: tl.constexpr,
                HAS_P: tl.constexpr, P_ROW: tl.constexpr, T_ROW: tl.constexpr,
                JOINT: tl.constexpr, CP2: tl.constexpr, GP2: tl.constexpr,
                G_PER_CHUNK: tl.constexpr, BRACKET: tl.constexpr, NS: tl.constexpr,
                MIXED: tl.constexpr):
    """``plan_row`` as a launch of its own (one program per output): for
    batches where the GPU, not the host, sets the time (triton/__init__.py)."""
    plan_row(tl.program_id(0), pi_ptr, pf_ptr, gm_ptr, plan_ptr, gl_ptr, V, C, B, idx_ptr,
             stride_row, k_ptr, k_val, p_ptr, p_val, t_ptr, t_val, st_ptr, HAS_INDICES,
             FROM_LOGITS, HAS_K, K_ROW, HAS_P, P_ROW, T_ROW, JOINT, CP2, GP2, G_PER_CHUNK, BRACKET,
             NS, MIXED)


@triton.jit(do_not_specialize=_SIZES)
def select_kernel(x_ptr, stride_row, V, B, C, idx_ptr, pi_ptr, pf_ptr, plan_ptr,
                  cand_ptr, above_ptr, n_above_ptr, seed_ptr, seed_step, off_ptr, off_step,
                  out_ptr, valid_ptr, k_ptr, k_val, p_ptr, p_val, mp_ptr, mp_val, t_ptr, t_val,
                  HAS_INDICES: tl.constexpr, FROM_LOGITS: tl.constexpr, HAS_K: tl.constexpr,
                  K_ROW: tl.constexpr, HAS_P: tl.constexpr, P_ROW: tl.constexpr,
                  HAS_MINP: tl.constexpr, MINP_ROW: tl.constexpr, T_ROW: tl.constexpr,
                  JOINT: tl.constexpr, STREAM_IS_POS: tl.constexpr, CP2: tl.constexpr,
                  CAP: tl.constexpr, BLOCK: tl.constexpr, CHUNK: tl.constexpr,
                  BRACKET: tl.constexpr, MIXED: tl.constexpr):
    """``select_row`` as a launch of its own (one program per output)."""
    select_row(tl.program_id(0), x_ptr, stride_row, V, B, C, idx_ptr, pi_ptr, pf_ptr, plan_ptr,
               cand_ptr, above_ptr, n_above_ptr, seed_ptr, seed_step, off_ptr,
               off_step, out_ptr, valid_ptr, k_ptr, k_val, p_ptr, p_val, mp_ptr, mp_val, t_ptr,
               t_val, HAS_INDICES, FROM_LOGITS, HAS_K, K_ROW, HAS_P, P_ROW, HAS_MINP, MINP_ROW,
               T_ROW, JOINT, STREAM_IS_POS, CP2, CAP, BLOCK, CHUNK, BRACKET, MIXED)
