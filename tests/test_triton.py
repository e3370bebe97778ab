"""Triton kernels against the reference backend, token for token and value for value.

On a CPU machine the kernels run under Triton's interpreter, so sizes are
chosen for CI's budget; tests/test_gpu.py repeats this at full size on a GPU.
"""

from types import SimpleNamespace

import pytest
import torch

import tokensampler as ts
from helpers import DEVICE, available_backends

pytestmark = pytest.mark.skipif("triton" not in available_backends(DEVICE),
                                reason="Triton backend unusable here (see tokensampler info)")

# (vocab, batch): irregular sizes the kernel issue names, scaled to the interpreter.
# The interpreter runs about ten programs a second: batch 99 appears once, below.
SHAPES = [(1, 9), (2, 9), (111, 9), (1000, 3), (32000, 1)]


def make_inputs(batch, vocab, seed, dtype=torch.float32):
    """Logits with ties (bf16 rounding), -inf masks and a wide dynamic range."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, vocab, generator=g) * torch.rand(batch, 1, generator=g) * 6
    logits = logits.to(torch.bfloat16).float()                      # many exact ties
    mask = torch.rand(batch, vocab, generator=g) < 0.3
    mask[:, 0] = False                                              # keep rows valid
    logits = logits.masked_fill(mask, -float("inf"))
    probs = torch.softmax(logits, dim=1)
    return logits.to(dtype).to(DEVICE), probs.to(dtype).to(DEVICE)


def per_row(batch, vocab, seed):
    """Per-output parameters that hit every edge: disabled, extremes, ordinary."""
    g = torch.Generator().manual_seed(seed)
    ks = torch.tensor([0, 1, 2, vocab - 1, vocab, vocab + 1, 50, -3])
    ps = torch.tensor([0.0, 1.0, 0.5, 0.9, 0.999, 1e-6, 0.25, 0.75])
    ms = torch.tensor([0.0, 1.0, 0.1, 0.5, -1.0, 1e-3, 0.05, 0.9])
    ts_ = torch.tensor([0.0, 1.0, 0.5, 1.5, 1e-3, 10.0, 0.7, 2.0])
    pick = torch.randint(0, 8, (4, batch), generator=g)
    return (ks[pick[0]].to(DEVICE), ps[pick[1]].to(DEVICE), ms[pick[2]].to(DEVICE),
            ts_[pick[3]].to(DEVICE))


SAMPLERS = {
    "probs": lambda l, p, k, tp, m, t, **kw: ts.sampling_from_probs(p, **kw),
    "logits": lambda l, p, k, tp, m, t, **kw: ts.sampling_from_logits(l, temperature=t, **kw),
    "top_p": lambda l, p, k, tp, m, t, **kw: ts.top_p_sampling_from_probs(p, tp, **kw),
    "top_k": lambda l, p, k, tp, m, t, **kw: ts.top_k_sampling_from_probs(p, k, **kw),
    "min_p": lambda l, p, k, tp, m, t, **kw: ts.min_p_sampling_from_probs(p, m, **kw),
    "kp_first": lambda l, p, k, tp, m, t, **kw: ts.top_k_top_p_sampling_from_probs(p, k, tp, **kw),
    "kp_joint": lambda l, p, k, tp, m, t, **kw: ts.top_k_top_p_sampling_from_probs(
        p, k, tp, filter_apply_order="joint", **kw),
    "logits_kp": lambda l, p, k, tp, m, t, **kw: ts.top_k_top_p_sampling_from_logits(
        l, k, tp, temperature=t, **kw),
    "logits_kp_joint": lambda l, p, k, tp, m, t, **kw: ts.top_k_top_p_sampling_from_logits(
        l, k, tp, temperature=t, filter_apply_order="joint", **kw),
}


def compare_samplers(vocab, batch, seed, scalar, samplers=SAMPLERS, dtype=torch.float32):
    logits, probs = make_inputs(batch, vocab, seed, dtype)
    if scalar:
        params = (min(50, vocab - 1) or 1, 0.9, 0.1, 0.7)
    else:
        params = per_row(batch, vocab, seed)
    seeds = dict(seed=seed * 7919) if scalar else dict(
        seed=torch.arange(batch, device=DEVICE) * 31 + seed, offset=torch.arange(batch, device=DEVICE))
    for name, fn in samplers.items():
        ref, ref_valid = fn(logits, probs, *params, return_valid=True, backend="reference", **seeds)
        got, got_valid = fn(logits, probs, *params, return_valid=True, backend="triton", **seeds)
        assert torch.equal(got_valid, ref_valid), name
        assert torch.equal(got, ref), (name, (got != ref).nonzero().flatten().tolist())


@pytest.mark.parametrize("vocab, batch", SHAPES)
@pytest.mark.parametrize("scalar", [True, False], ids=["scalar", "per_row"])
def test_samplers_match_reference(vocab, batch, scalar):
    if vocab > 4096 and not scalar and DEVICE == "cpu":
        pytest.skip("per-row parameters at V > 4096 take minutes in the interpreter; "
                    "tests/test_gpu.py covers them")
    compare_samplers(vocab, batch, seed=vocab + batch, scalar=scalar)


def test_batch_99():
    compare_samplers(111, 99, seed=99, scalar=False,
                     samplers={"logits_kp": SAMPLERS["logits_kp"]})


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    compare_samplers(333, 5, seed=3, scalar=False, dtype=dtype)


def test_largest_vocab_once():
    """V = 151936 (Qwen's vocabulary): one row through the logits and probs paths."""
    names = ("logits_kp", "top_p")
    compare_samplers(151936, 1, seed=5, scalar=True, samplers={n: SAMPLERS[n] for n in names})


def test_indices_and_bad_rows():
    logits, probs = make_inputs(6, 200, seed=9)
    probs[2, 7] = float("nan")
    probs[4] = 0.0
    logits[1] = -float("inf")
    logits[3, 5] = float("inf")
    idx = torch.tensor([0, 2, 2, 4, 5, 1, 3, 0] * 4, device=DEVICE)
    for fn in (lambda **kw: ts.top_k_top_p_sampling_from_probs(probs, 20, 0.8, **kw),
               lambda **kw: ts.top_k_top_p_sampling_from_logits(logits, 20, 0.8, **kw),
               lambda **kw: ts.sampling_from_logits(logits, temperature=0.0, **kw)):
        ref = fn(indices=idx, seed=4, return_valid=True, backend="reference")
        got = fn(indices=idx, seed=4, return_valid=True, backend="triton")
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])


def assert_filter_matches(got, ref, name):
    """A renorm or softmax output against the reference's: the same NaN rows
    and kept sets exactly; the values to float32 rounding (the reference
    divides in float64, semantics.md section 1)."""
    assert torch.equal(torch.isnan(got), torch.isnan(ref)), name
    assert torch.equal(got == 0, ref == 0), name
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-30, equal_nan=True), name


@pytest.mark.parametrize("vocab, batch", [(1, 5), (111, 9), (1000, 3)])
def test_filters_match_reference(vocab, batch):
    logits, probs = make_inputs(batch, vocab, seed=vocab)
    k, p, _, t = per_row(batch, vocab, seed=vocab)
    probs[batch - 1] = 0.0  # a bad row: all NaN in every output
    for name, fn in {
        "top_p_renorm": lambda b: ts.top_p_renorm_probs(probs, p, backend=b),
        "top_k_renorm": lambda b: ts.top_k_renorm_probs(probs, k, backend=b),
        "top_p_renorm_scalar": lambda b: ts.top_p_renorm_probs(probs, 0.6, backend=b),
        "softmax": lambda b: ts.softmax(logits, t, backend=b),
    }.items():
        assert_filter_matches(fn("triton"), fn("reference"), name)
    for kk in (k, 3, 0):
        ref = ts.top_k_mask_logits(logits, kk, backend="reference")
        got = ts.top_k_mask_logits(logits, kk, backend="triton")
        assert torch.equal(got, ref)


@pytest.mark.parametrize("vocab", [50, 5000])
def test_out_of_range_device_values_make_rows_invalid(vocab):
    """What params.py leaves unchecked on accelerators, the kernels report as invalid.

    On the CPU the check happens on the host, so this drives the backend directly.
    """
    from tokensampler import dispatch
    from tokensampler.params import sampling_call

    logits, probs = make_inputs(4, vocab, seed=1)
    call = sampling_call("t", probs, from_logits=False, top_p=torch.full((4,), 0.5, device=DEVICE),
                         seed=1)
    bad_p = torch.tensor([0.5, 1.5, float("nan"), -0.1], device=DEVICE)
    call = call._replace(top_p=bad_p)
    for backend in ("reference", "triton"):
        out, valid = dispatch.load(backend).sample(call)
        assert valid.tolist() == [True, False, False, False], backend
        assert out[1:].tolist() == [0, 0, 0], backend


def test_rows_with_no_filter_left_race_from_the_stats():
    """Masked rows (as guided decoding gives) with fewer positive tokens
    than top-k, or top-k off in a per-request tensor, and no top-p (or
    top-p 1): no filter is left, and select_row races the row from the
    stats' chunk masses (one chunk read) rather than in the single-program
    path (with per-request top-p, rows with top-k off and top-p 1 too,
    instead of rejection; rows 2 and 5 at top-p 0.3 and 0.5 are not plain).
    Scalar and per-request top-k, from probs and logits (per-request
    temperature), the allowed tokens spread over the row's three chunks,
    per-output seeds and one seed for the call; tokens match the reference."""
    vocab, batch = 2 * 4096 + 5, 6
    g = torch.Generator().manual_seed(9)
    logits = torch.full((batch, vocab), float("-inf"))
    for r in range(batch):
        allowed = torch.randperm(vocab, generator=g)[: 3 + 7 * r]
        logits[r, allowed] = torch.randn(len(allowed), generator=g) * 2
    logits[5, 8192:] = 6.0                       # the short last chunk holds most of the mass
    k = torch.tensor([50, 0, 60, -1, 8000, vocab])   # on, but at least n_pos; or off
    p = torch.tensor([1.0, 1.0, 0.3, 1.0, 1.0, 0.5])   # rows 2 and 5 are not plain
    temp = torch.tensor([1.0, 0.5, 2.0, 1.0, 0.8, 1.0])
    seeds = torch.arange(batch) * 13 + 4
    logits, k, p, temp, seeds = (t.to(DEVICE) for t in (logits, k, p, temp, seeds))
    probs = torch.softmax(logits, dim=1)
    calls = {
        "scalar": lambda **kw: ts.top_k_sampling_from_probs(probs, 50, **kw),
        "per_row": lambda **kw: ts.top_k_sampling_from_probs(probs, k, **kw),
        "joint_p1": lambda **kw: ts.top_k_top_p_sampling_from_probs(probs, k, p, **kw),
        "logits": lambda **kw: ts.top_k_top_p_sampling_from_logits(
            logits, 60, 1.0, temperature=temp, **kw),
    }
    for name, call in calls.items():
        # Per-output seeds, and one seed for the call (each output its own stream).
        for seed in (seeds, 7):
            ref = call(seed=seed, return_valid=True, backend="reference")
            got = call(seed=seed, return_valid=True, backend="triton")
            assert torch.equal(got[1], ref[1]), name
            assert torch.equal(got[0], ref[0]), (name, got[0].tolist(), ref[0].tolist())


def test_per_request_top_k_past_int32_is_off():
    """An int64 per-request top-k past int32 (engines' "off" sentinels) is
    off, as in the reference: the kernels clamp it before it becomes int32
    (2**32 + 3 had acted as k = 3). Sampling with and without top-p matches
    the reference; every op, the renorm and the mask too, gives exactly what
    it gives for the same rows with k = V, 0 or -1."""
    logits, probs = make_inputs(4, 300, seed=8)
    k = torch.tensor([2**32 + 3, -(2**40) + 2, 2**31, 5], device=DEVICE)
    same = torch.tensor([300, 0, 300, 5], device=DEVICE)
    p = torch.tensor([0.9, 1.0, 0.5, 0.9], device=DEVICE)
    seed = torch.arange(4, device=DEVICE) + 11
    calls = {
        "top_k": lambda k, b: ts.top_k_sampling_from_probs(probs, k, seed=seed, backend=b),
        "kp": lambda k, b: ts.top_k_top_p_sampling_from_probs(probs, k, p, seed=seed, backend=b),
        "renorm": lambda k, b: ts.top_k_renorm_probs(probs, k, backend=b),
        "mask": lambda k, b: ts.top_k_mask_logits(logits, k, backend=b),
    }
    for name, call in calls.items():
        got = call(k, "triton")
        assert torch.equal(got, call(same, "triton")), (name, got)
        if name in ("top_k", "kp"):
            assert torch.equal(got, call(k, "reference")), name
    assert bool((ts.top_k_mask_logits(logits, k, backend="triton")[:3] == logits[:3]).all())


def test_overflow_fallback_two_stage_race():
    """Rows whose candidate set overflows the pruned path's buffer (flat rows,
    V > 4096) take the single-program fallback, which races the chunks too."""
    vocab = 2 * 4096 + 333
    probs = torch.ones(2, vocab)
    probs[1, ::3] = 2.0                       # many exact ties at two levels
    probs = probs.to(DEVICE)
    # Kept ties reach into the second chunk, which wins about half the time.
    for kw in (dict(top_p=0.9), dict(top_k=7000, top_p=0.8)):
        fn = ts.top_k_top_p_sampling_from_probs if "top_k" in kw else ts.top_p_sampling_from_probs
        for seed in range(4):
            ref = fn(probs, **kw, seed=seed, return_valid=True, backend="reference")
            got = fn(probs, **kw, seed=seed, return_valid=True, backend="triton")
            assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1]), (kw, seed)


def assert_top_p_matches_reference(x, p, seeds):
    """Top-p alone: the Triton backend's tokens and validity equal the reference's."""
    ref = ts.top_p_sampling_from_probs(x, p, seed=seeds, return_valid=True, backend="reference")
    got = ts.top_p_sampling_from_probs(x, p, seed=seeds, return_valid=True, backend="triton")
    assert torch.equal(got[1], ref[1])
    assert torch.equal(got[0], ref[0]), (got[0] != ref[0]).nonzero().flatten().tolist()


@pytest.mark.parametrize("fuse", [True, False], ids=["rejection", "bracket"])
def test_top_p_bracket_per_row_edges(fuse, monkeypatch):
    """Top-p alone at V > 4096, per-row p over the edges, flat and peaked
    rows: by chunk-parallel rejection, and (where steps do not fuse, ROCm)
    through the histogram bracket and the single-program rejection."""
    import tokensampler.triton as tt
    monkeypatch.setattr(tt, "_FUSE_OK", fuse)
    vocab, batch = 3 * 4096 + 7, 8
    g = torch.Generator().manual_seed(11)
    # N(0, 1) logits: top-p 0.9 keeps ~60% of the row, far more than one sort's
    # 4096 slots, so the bracket must narrow and most kept tokens lie above it.
    probs = torch.softmax(torch.randn(batch, vocab, generator=g), dim=1)
    # Sorted rows put the sure mass above the bracket in the first chunks and
    # the bracket in a later one: the chunk draw must count both.
    probs[4:] = probs[4:].sort(dim=1, descending=True).values
    probs[0] = 1.0                                    # flat: the bracket cannot narrow
    probs = probs.to(DEVICE)
    p = torch.tensor([0.9, 0.0, 1e-6, 0.5, 0.999, 1.0, 0.25, 0.75], device=DEVICE)
    seeds = torch.arange(batch, device=DEVICE) * 13 + 5
    assert_top_p_matches_reference(probs, p, seeds)


@pytest.mark.parametrize("from_logits, fused", [
    (False, (32, 32, 32)), (True, (32, 32, 32)), (False, (0, 0, 0)), (True, (0, 32, 0))],
    ids=["probs-fused", "logits-fused", "probs-separate", "logits-narrow_fused"])
def test_top_p_histogram_narrows_to_the_buffer(from_logits, fused, monkeypatch):
    """The histogram passes narrow the top-p bracket of N(0, 1) and N(0, 3)
    rows enough that compaction never overflows the 4096-slot buffer, and the
    tokens still match the reference: with the per-row steps fused into the
    launches before them (small batches) and as launches of their own."""
    import tokensampler.triton as tt
    seen = []
    monkeypatch.setattr(tt, "inspect", seen.append)
    monkeypatch.setattr(tt, "FUSE_ROWS", {**tt.FUSE_ROWS,
                                          **dict(zip(("plan", "narrow", "select"), fused))})
    # The histogram bracket serves top-p alone where steps do not fuse (ROCm).
    monkeypatch.setattr(tt, "_FUSE_OK", False)
    vocab, batch = 3 * 4096 + 7, 6
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(batch, vocab, generator=g) * torch.tensor([1.0, 3.0]).repeat(3)[:, None]
    x = (logits if from_logits else torch.softmax(logits, dim=1)).to(DEVICE)
    p = torch.tensor([0.9, 0.9, 0.5, 0.5, 0.99, 0.99], device=DEVICE)
    if from_logits:    # top_k=None: top-p alone, from logits
        def fn(x, p, **kw):
            return ts.top_k_top_p_sampling_from_logits(x, None, p, **kw)
    else:
        fn = ts.top_p_sampling_from_probs
    ref = fn(x, p, seed=3, return_valid=True, backend="reference")
    got = fn(x, p, seed=3, return_valid=True, backend="triton")
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    (ws,) = seen
    assert ws.bracket
    counts = ws.count.tolist()
    assert max(counts) <= ws.cap, counts            # every row fit the buffer
    assert min(counts) > 0, counts


def test_histogram_bracket_counts_are_upper_bounds(monkeypatch):
    """Each narrowed bracket's token count, as narrow_row estimates it from
    the histogram, is at least the true count (else a row could stop
    narrowing while its bracket still overflows the buffer). Large logits
    with a small spread make the bins narrow next to the edge margins."""
    import tokensampler.triton as tt
    seen = []
    monkeypatch.setattr(tt, "inspect", seen.append)
    monkeypatch.setattr(tt, "_FUSE_OK", False)     # the bracket path (ROCm)
    vocab, batch = 3 * 4096 + 7, 4
    g = torch.Generator().manual_seed(8)
    logits = torch.randn(batch, vocab, generator=g) * 0.3 + torch.tensor([3000.0, 300.0, 0.0, -40.0])[:, None]
    p = torch.tensor([0.5, 0.8, 0.9, 0.5])
    ref = ts.top_k_top_p_sampling_from_logits(logits.to(DEVICE), None, p.to(DEVICE), seed=2,
                                              return_valid=True, backend="reference")
    got = ts.top_k_top_p_sampling_from_logits(logits.to(DEVICE), None, p.to(DEVICE), seed=2,
                                              return_valid=True, backend="triton")
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    ws = seen[-1]
    st = ws.st[: ws.n * tt.HIST_PASSES * 4].view(ws.n, tt.HIST_PASSES, 4).cpu()
    bits = logits.view(torch.int32)
    keys = bits ^ ((bits >> 31) & 0x7FFFFFFF)                  # row.order_key for logits
    checked = 0
    for r in range(batch):
        for slot in range(1, tt.HIST_PASSES):
            lo, hi, n_in = st[r, slot, :3].tolist()
            if lo < hi:
                true = int(((keys[r] >= lo) & (keys[r] <= hi)).sum())
                assert n_in >= true, (r, slot, n_in, true)
                checked += 1
    assert checked >= batch
    assert max(ws.count.tolist()) <= ws.cap


@pytest.mark.parametrize("vocab, form", [(64, "tail"), (64, "split"), (64, "lazy"),
                                         (9000, "lazy"), (64, "single")])
def test_top_p_rejection_rounds_match_reference(vocab, form, monkeypatch):
    """Top-p alone by adaptive rejection: rows whose kept set is tokens 0
    and 1 of a nearly flat row (kept mass 3/65 or 3/9001), so that later
    rounds and the final race decide many of them, and ordinary rows decided
    in round 0; every token matches. Chunk-parallel with round 0's draws in
    the stats launch's tail or in their own launch (every stage taken),
    with draw 0 checked alone first ("lazy", as above FUSE_ROWS["round0"]
    outputs; rows that reject it check all four in a second launch), and
    the single-program ``reject_row`` that ROCm's rows take. Rounds after
    the first read 2 chunks a program here, so a 3-chunk row has a program
    with a full span and one with a partial span. The tail over several
    chunks costs 85 s here; ordinary multi-chunk rows take it in
    test_samplers_match_reference, and test_gpu compares the forms bitwise."""
    import tokensampler.triton as tt
    seen = []
    monkeypatch.setattr(tt, "inspect", seen.append)
    draws = (1 << 30) if form == "tail" else 0
    round0 = 0 if form == "lazy" else 1 << 30
    monkeypatch.setattr(tt, "FUSE_ROWS", {**tt.FUSE_ROWS, "draws": draws, "round0": round0})
    monkeypatch.setattr(tt, "_FUSE_OK", form != "single")
    monkeypatch.setattr(tt, "CHECK_SPAN", 2)
    batch = 48 if vocab < 4096 else 24    # the interpreter races 9000-token rows slowly
    x = torch.ones(batch, vocab)
    x[:, 0] = 2.0
    p = torch.full((batch,), 2.5 / (vocab + 1))
    g = torch.Generator().manual_seed(vocab)
    x[:8] = torch.softmax(torch.randn(8, vocab, generator=g) * 2, dim=1)
    p[:8] = torch.tensor([0.9, 0.5, 0.3, 0.99, 1.0, 0.0, 0.7, 0.1])
    seeds = torch.arange(batch) * 31 + 2
    x, p, seeds = x.to(DEVICE), p.to(DEVICE), seeds.to(DEVICE)
    assert_top_p_matches_reference(x, p, seeds)
    if form != "single":
        (ws,) = seen
        stages = set((-2 - ws.state).tolist())   # round that decided each row; ROUNDS: the race
        assert stages >= {0, 1, tt.ROUNDS}, stages


def test_top_p_rejection_with_ties_across_chunks():
    """Rows whose tokens tie across chunks: flat rows, and rows of two levels
    in blocks longer than a chunk. The kept set ends inside a run of ties,
    so a draw's prefix mass counts the tied tokens of every earlier chunk and
    of its own chunk up to it (check_kernel's compare by chunk)."""
    vocab, batch = 3 * 4096 + 7, 8
    x = torch.ones(batch, vocab)
    x[4:, 5000:11000] = 0.5                   # a lower level across chunks 1 and 2
    x[6:, :3000] = 0.25                       # a lower first block: the order is not the index
    p = torch.tensor([0.3, 0.5, 0.7, 0.95, 0.2, 0.6, 0.4, 0.8])
    seeds = torch.arange(batch) * 7 + 1
    x, p, seeds = x.to(DEVICE), p.to(DEVICE), seeds.to(DEVICE)
    assert_top_p_matches_reference(x, p, seeds)


def test_top_p_rejection_on_denormal_chunks():
    """Chunks of denormal probs beside normal ones: their masses reach the
    row's scale as 2**(e_chunk - e_row) in one step (2**e_chunk alone is 0
    for a denormal chunk, and the draws' prefix masses went wrong; found by
    the hostile-row campaign)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 4100, generator=g) * 1e-39
    x[:, ::3] *= 4
    x[4:, :2000] = torch.rand(4, 2000, generator=g) * 1e-3
    x = x.to(DEVICE)
    for p in (0.3, 0.9):
        ref = ts.top_p_sampling_from_probs(x, p, seed=5, return_valid=True, backend="reference")
        got = ts.top_p_sampling_from_probs(x, p, seed=5, return_valid=True, backend="triton")
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1]), p


def test_rows_with_top_k_off_in_a_per_request_call_draw_by_rejection(monkeypatch):
    """Per-request top-k + top-p where top-k is off in some rows (0, -1, V
    and past V, as engines pass it): those rows are top-p alone, and draw by
    chunk-parallel rejection after the joint launches (plan_row opens them,
    select_row leaves them), not by the single-program path. Two-chunk rows:
    flat ones at a tiny p (decided in later rounds and by the final race),
    peaked ones at p in {0.3, 0.5, 0.9} (round 0) and 1 (plain: select_row
    races it), and rows with top-k on beside them: from probs (top-k first)
    with plan and select fused into their launches and round 0 a program a
    chunk, its four draws checked at once, then from logits (joint) with
    plan and select launches of their own, round 0 a program a row and draw
    0 checked alone first (one test, not two: each call takes 30 s under
    the interpreter). Every token and flag is the reference's; each
    row's state says which path decided it; the counters end at zero."""
    import tokensampler.triton as tt
    from tokensampler.triton import workspace
    seen = []
    monkeypatch.setattr(tt, "inspect", seen.append)
    vocab, batch = 4096 + 5, 12
    g = torch.Generator().manual_seed(3)
    logits = torch.zeros(batch, vocab)
    logits[:4, 0] = 0.75                        # flat rows with one token a little higher
    logits[4:] = torch.randn(batch - 4, vocab, generator=g) * 3
    k = torch.tensor([0, -1, vocab, vocab + 3, 0, vocab, -5, 0, 5, 50, 1, 200])
    p = torch.tensor([1e-4, 3e-4, 2e-4, 5e-4, 0.9, 0.5, 1.0, 0.3, 0.9, 0.9, 0.5, 0.7])
    seeds = torch.arange(batch) * 31 + 2
    logits, k, p, seeds = (t.to(DEVICE) for t in (logits, k, p, seeds))
    probs = torch.softmax(logits, dim=1)
    calls = (lambda **kw: ts.top_k_top_p_sampling_from_probs(probs, k, p, **kw),
             lambda **kw: ts.top_k_top_p_sampling_from_logits(
                 logits, k, p, filter_apply_order="joint", **kw))
    stages = set()
    for split, call in enumerate(calls):
        if split:   # (and round 0 over both chunks in one program)
            monkeypatch.setattr(tt, "FUSE_ROWS", {**tt.FUSE_ROWS, "plan": 0, "select": 0,
                                                  "round0": 0})
            monkeypatch.setattr(tt, "GATED_SPAN", 2)
        ref = call(seed=seeds, return_valid=True, backend="reference")
        got = call(seed=seeds, return_valid=True, backend="triton")
        assert torch.equal(got[1], ref[1])
        assert torch.equal(got[0], ref[0]), (got[0] != ref[0]).nonzero().flatten().tolist()
        st = seen[-1].st[:batch].tolist()
        # Top-k on, or top-k off at top-p 1 (row 6: plain): select_row answered.
        assert st[6] == -1 and st[8:] == [-1] * 4, st
        rejected = st[:6] + st[7:8]                  # top-k off: decided by rejection
        assert all(s <= -2 for s in rejected), st
        stages |= {-2 - s for s in rejected}         # the round (ROUNDS: the final race)
        left = [int(b.zeros.count_nonzero()) for b in workspace._local.buffers.values()
                if b.zeros is not None]
        assert left and not any(left), left
    assert stages >= {0, 1, tt.ROUNDS}, stages


def test_select_sorts_sized_to_the_candidates(monkeypatch):
    """select_row takes 256, 2048 or 4096 slots by the row's candidate
    count (sorting them where top-p needs the order); rows whose counts fall
    in each size match the reference."""
    import tokensampler.triton as tt
    seen = []
    monkeypatch.setattr(tt, "inspect", seen.append)
    vocab = 32000    # 1000 groups of 32: top-k bounds up to k = 1000 stay tight
    logits = torch.randn(4, vocab, generator=torch.Generator().manual_seed(21)) * 2
    probs = torch.softmax(logits, dim=1).to(DEVICE)
    logits = logits.to(DEVICE)
    k = torch.tensor([5, 300, 600, 950], device=DEVICE)
    for fn in (lambda **kw: ts.top_k_sampling_from_probs(probs, k, **kw),
               lambda **kw: ts.top_k_top_p_sampling_from_logits(logits, k, 0.95, **kw)):
        ref = fn(seed=9, return_valid=True, backend="reference")
        got = fn(seed=9, return_valid=True, backend="triton")
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
        # Read now: the views are the next call's too (workspace.py).
        counts = seen[-1].count.tolist()
        assert counts[0] <= 256 < counts[1] <= 2048 < counts[3] <= 4096, counts


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "split"])
def test_top_k_without_sorting_keeps_the_lowest_index_ties(fuse, monkeypatch):
    """Top-k alone picks its kept set among more than 256 candidates without
    sorting them (chunked._top_k_of): the k-th largest key, then the lowest
    indices among its ties. Rows of three exact levels (4, 2, 1; sums exact
    in float32 and float64) put the k-th token inside a run of ties spread
    over three chunks: keeping any other tie, or one too many or too few,
    changes the tokens drawn. 12 outputs a row, token for token with the
    reference, with candidates in the 256-slot tier (sorted) and in the
    2048- and 4096-slot tiers (searched); a run of ties at consecutive
    indices, where keeping the next index is the off-by-one to catch; then
    a row of logits."""
    import tokensampler.triton as tt
    monkeypatch.setattr(tt, "_FUSE_OK", fuse)
    seen = []
    monkeypatch.setattr(tt, "inspect", seen.append)
    vocab = 2 * 4096 + 100
    g = torch.Generator().manual_seed(5)
    probs = torch.ones(6, vocab)
    probs[4, ::32] = 2.0   # one two in every 32-token group: 260 candidates
    probs[5, 4000:4300] = 2.0   # 300 consecutive twos, across a chunk border
    for r, (n_a, n_b) in enumerate([(60, 200), (10, 50), (0, 300), (0, 3000)]):
        where = torch.randperm(vocab, generator=g)
        probs[r, where[:n_a]] = 4.0
        probs[r, where[n_a:n_a + n_b]] = 2.0
    probs = probs.to(DEVICE)
    # Row 0: 60 fours, then 90 of 200 twos; row 1: all 10 fours and 10 of 50
    # twos; rows 2 and 3: the 2 and 3 lowest-indexed of 300 and 3000 twos,
    # so that one tie too many or too few changes half the tokens or more;
    # row 4: k equal to its candidates, or one fewer; row 5: the first two
    # of its run (a third, the next index, would win a third of the draws).
    rows = torch.arange(6, device=DEVICE).repeat_interleave(12)
    k = torch.tensor([150, 20, 2, 3, 260, 2], device=DEVICE).repeat_interleave(12)
    k[1], k[2] = 60, 61    # row 0: exactly its fours; one tie more
    k[13] = 40             # row 1: its fours and 30 of its 50 twos
    k[25], k[26] = 1, 150  # row 2: the first tie; half of them
    k[37] = 2999           # row 3: all but its last tie
    k[48:60:2] = 259       # row 4: all but its last
    seeds = torch.arange(rows.numel(), device=DEVICE) * 7 + 3
    ref = ts.top_k_sampling_from_probs(probs, k, indices=rows, seed=seeds, return_valid=True,
                                       backend="reference")
    got = ts.top_k_sampling_from_probs(probs, k, indices=rows, seed=seeds, return_valid=True,
                                       backend="triton")
    assert torch.equal(got[1], ref[1])
    assert torch.equal(got[0], ref[0]), (got[0] != ref[0]).nonzero().flatten().tolist()
    counts = seen[-1].count.tolist()
    searched = counts[:12] + counts[24:36] + counts[48:]
    assert max(counts[12:24]) <= 256 < min(searched), counts
    assert max(searched) <= 2048 < min(counts[36:48]) <= 4096, counts
    assert counts[48:60] == [260] * 12 and counts[60:] == [300] * 12, counts
    # Logits: negative order keys (every logit below 0) and bf16 ties, top-k
    # alone (top_p None) past 256 candidates, against the reference.
    logits = (torch.randn(1, vocab, generator=g) * 2 - 20).to(torch.bfloat16).to(DEVICE)
    rows = torch.zeros(12, dtype=torch.int64, device=DEVICE)
    k = torch.tensor([200] * 10 + [1, 150], device=DEVICE)
    kw = dict(indices=rows, seed=seeds[:12], return_valid=True)
    ref = ts.top_k_top_p_sampling_from_logits(logits, k, None, backend="reference", **kw)
    got = ts.top_k_top_p_sampling_from_logits(logits, k, None, backend="triton", **kw)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    assert 256 < min(seen[-1].count.tolist()[:10]) <= 2048, seen[-1].count.tolist()


@pytest.mark.parametrize("count,size,keys,indices", [
    (1, 2048, "wide", "spread"), (129, 2048, "ends", "top"), (300, 2048, "few", "run"),
    (513, 2048, "one", "run"), (1000, 2048, "wide", "spread"), (2047, 2048, "few", "top"),
    (2048, 2048, "ends", "spread"), (2049, 4096, "few", "run"), (4096, 4096, "one", "top")])
def test_top_k_of_keeps_exactly_the_k_largest(count, size, keys, indices):
    """chunked._top_k_of alone (a one-program probe kernel per k), its mask
    against a sort by key descending, then index ascending. Counts on and
    off the search's 128- and 512-candidate blocks, up to the 4096-slot
    tier; keys spread over int32, at its two ends, a few values (long runs
    of ties) or one; indices in a run (neighbours are the off-by-one),
    ending at 2**31 - 1, or spread; k from 1 to past the count; the
    candidates shuffled, as compact_kernel's atomics leave them. The
    end-to-end test above draws tokens, which one tie too many rarely
    changes; this compares the kept set itself."""
    import random

    from probes import top_k_of_probe
    rng = random.Random(count)
    lo, hi = -2**31, 2**31 - 1
    pool = {"wide": None, "ends": [lo, lo + 1, -1, 0, hi - 1, hi],
            "few": [rng.randint(lo, hi) for _ in range(3)], "one": [rng.randint(lo, hi)]}[keys]
    key = [rng.randint(lo, hi) if pool is None else rng.choice(pool) for _ in range(count)]
    start = {"run": rng.randrange(1000), "top": 2**31 - count, "spread": None}[indices]
    idx = rng.sample(range(2**31), count) if start is None else list(range(start, start + count))
    order = list(range(count))
    rng.shuffle(order)
    key, idx = [key[i] for i in order], [idx[i] for i in order]
    packed = torch.tensor([a * 2**32 + (2**32 - 1 - b) for a, b in zip(key, idx)],
                          dtype=torch.int64, device=DEVICE)
    ks = [1, 2, count // 2 + 1, count - 1, count, count + 3]
    ks = [k for k in ks if k >= 1]
    out = torch.zeros(len(ks), size, dtype=torch.int8, device=DEVICE)
    top_k_of_probe[(len(ks),)](packed, torch.tensor(ks, device=DEVICE), out, count, SIZE=size)
    rank = sorted(range(count), key=lambda i: (-key[i], idx[i]))
    for row, k in enumerate(ks):
        want = torch.zeros(count, dtype=torch.int8)
        want[rank[:k]] = 1
        got = out[row, :count].cpu()
        assert torch.equal(got, want), (k, (got != want).nonzero().flatten().tolist()[:8])


def _stand_in_launcher(monkeypatch):
    """launcher.py with no key left behind, direct launches on, a stand-in
    device and stream and no hooks: (launcher, log, a stand-in kernel that
    logs its launches, a tensor argument)."""
    import threading
    from tokensampler.triton import launcher
    monkeypatch.setattr(launcher, "_local", launcher._Local())
    monkeypatch.setattr(launcher, "_sites", {})
    monkeypatch.setattr(launcher, "_programs", {})
    monkeypatch.setattr(launcher, "DIRECT", True)
    monkeypatch.setattr(launcher, "_device_and_stream", lambda: (0, "stream"))
    monkeypatch.setattr(launcher, "_knobs", SimpleNamespace(launch_enter_hook=None,
                                                            launch_exit_hook=None))
    log = []
    return launcher, log, _StandInKernel(log), torch.zeros(4)


def test_a_complete_key_launches_without_checks_and_the_samplers_key_is_complete(monkeypatch):
    """Under ``plan(key, complete=True)`` a launch made once goes straight to
    its variant, without the per-argument checks: the key must fix every
    argument's type and int class. The samplers' key (triton._key) does: it
    changes with the input's dtype, alignment and row stride's class."""
    import tokensampler.triton as tt
    launcher, log, kernel, x = _stand_in_launcher(monkeypatch)

    def call(n=5, complete=True):
        launcher.plan("k", complete=complete)
        launcher.launch(kernel, (2,), x, n, 0.5, A=3, num_warps=4)
        return log[-1][0]

    assert call() == "triton" and call() == "direct"
    assert call(n=32) == "direct"                   # trusted: the key must have said so
    assert call(n=32, complete=False) == "triton"   # checked
    monkeypatch.setattr(launcher, "_knobs", SimpleNamespace(
        launch_enter_hook=SimpleNamespace(calls=[print]), launch_exit_hook=None))
    assert call() == "triton"                       # a profiler's hook, looked at in plan
    L = object()
    base = torch.zeros(2, 1040)
    key = lambda v: tt._key(L, v, ("s",))
    a, shifted, half = base[:, :1000], base[:, 1:1001], torch.zeros(2, 1000).half()
    s1000, s1001 = torch.zeros(2, 1000), torch.zeros(2, 1001)[:, :1000]
    assert len({key(a), key(shifted), key(half), key(s1000)}) == 4
    assert key(s1000) == key(s1001)   # neither 1 nor a multiple of 16: one class


def test_a_large_scalar_top_k_reads_smaller_groups(monkeypatch):
    """Top-k 1000 at V=32000: the k-th largest of 1000 group maxima is the
    smallest, so with 32-token groups every token was a candidate and every
    row overflowed to the single-program path (555 µs against FlashInfer's
    14 on an H200). A scalar top_k that would make more than CAP / 2
    candidates halves the group size (down to 8): the candidates fit, and
    the tokens match the reference. Per-request tensors keep 32-token
    groups."""
    import tokensampler.triton as tt
    assert [tt._group(32000, k) for k in (50, 800, 900, 1000, 1500)] == [32, 32, 16, 16, 8]
    assert tt._group(128256, 1000) == 32 and tt._group(128256, 2000) == 16
    assert tt._group(262144, 5000) == 32            # the plan's lanes stay within 8192
    assert tt._group(32000, torch.tensor([1000])) == 32
    seen = []
    monkeypatch.setattr(tt, "inspect", seen.append)
    vocab = 8192   # (two chunks: the interpreter is slow) 256 groups of 32
    assert tt._group(vocab, 300) == 16 and tt._group(vocab, 700) == 8
    logits = torch.randn(2, vocab, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    probs = torch.softmax(logits, dim=1)
    for k, fn in ((300, lambda **kw: ts.top_k_sampling_from_probs(probs, 300, **kw)),
                  (700, lambda **kw: ts.top_k_top_p_sampling_from_logits(logits, 700, 0.9,
                                                                        **kw))):
        ref = fn(seed=3, return_valid=True, backend="reference")
        got = fn(seed=3, return_valid=True, backend="triton")
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
        counts = seen[-1].count.tolist()
        assert all(k <= c <= tt.CAP for c in counts), counts   # 32-token groups: all 8192


def test_workspaces_are_kept_per_layout_and_thread(monkeypatch):
    """A layout's workspaces are views of one buffer the calling thread keeps
    (triton/workspace.py): the next call with that layout reuses them (so its
    counters must be back at zero, or the row's last program is never seen),
    another thread gets its own, a layout past MAX_BYTES gets fresh tensors
    each call, and every call's tokens still match the reference."""
    import threading
    import tokensampler.triton as tt
    from tokensampler.triton import workspace
    seen = []
    monkeypatch.setattr(tt, "inspect", seen.append)
    workspace.release()
    vocab = 1000

    def both(seed, fn):
        logits, probs = make_inputs(3, vocab, seed)
        ref = fn(logits, probs, seed=seed, return_valid=True, backend="reference")
        got = fn(logits, probs, seed=seed, return_valid=True, backend="triton")
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1]), seed
        return getattr(seen[-1], "plan", None)   # a workspace view (the tensor object)

    top_k = lambda lg, pr, **kw: ts.top_k_sampling_from_probs(pr, 7, **kw)
    top_p = lambda lg, pr, **kw: ts.top_p_sampling_from_probs(pr, 0.5, **kw)
    first = both(1, top_k)
    assert both(2, top_k) is first             # the same views, counters back at zero
    both(3, top_p)
    both(4, top_p)                             # (top-p's arrival counters too)
    other = []
    thread = threading.Thread(target=lambda: other.append(both(5, top_k)))
    thread.start()
    thread.join()
    assert other and other[0].data_ptr() != first.data_ptr()   # a buffer of its own
    workspace.release()
    monkeypatch.setattr(workspace, "MAX_BYTES", 64)
    assert both(6, top_k) is not both(7, top_k)   # past MAX_BYTES: fresh each call
    workspace.release()


def test_workspace_buffers_grow_by_doubling_and_are_bounded(monkeypatch):
    """workspace.get: a larger layout at least doubles the buffer (so growing
    batch sizes re-carve a few times, not at each size) and drops the views
    of the old one; a thread keeps MAX_BUFFERS (device, stream) buffers and
    MAX_LAYOUTS layouts' views, least recently used dropped first."""
    from tokensampler.triton import workspace
    cpu = torch.device("cpu")
    carve = lambda n, alloc, zeros: SimpleNamespace(a=alloc(n, torch.int32),
                                                    b=alloc(1, torch.int64))
    workspace.release()
    small = workspace.get(10, carve, cpu, "s")          # 12 + 4 entries
    assert workspace.get(10, carve, cpu, "s") is small
    big = workspace.get(20, carve, cpu, "s")            # 20 + 4: doubles to 32
    assert workspace._local.buffers[(cpu, "s")].data.numel() == 32
    again = workspace.get(10, carve, cpu, "s")
    assert again is not small and again.a.data_ptr() == big.a.data_ptr()   # carved anew
    assert workspace.get(28, carve, cpu, "s").a.data_ptr() == big.a.data_ptr()  # fits: no growth
    # The addresses kept beside the views (a ready call's form) follow them.
    def addresses_match(n, where="s"):
        views = workspace.get(n, carve, cpu, where)
        addrs = workspace.get(n, carve, cpu, where, addresses=True)
        return (addrs.a, addrs.b) == (views.a.data_ptr(), views.b.data_ptr())
    assert addresses_match(10)
    old = workspace.get(10, carve, cpu, "s")            # (held: its memory is not reused)
    old_a = workspace.get(10, carve, cpu, "s", addresses=True).a
    assert old_a == old.a.data_ptr()
    workspace.get(100, carve, cpu, "s")                 # grows: every view carved anew
    assert addresses_match(10) and workspace.get(10, carve, cpu, "s", addresses=True).a != old_a
    workspace.discard(cpu, "s")
    assert addresses_match(10)
    monkeypatch.setattr(workspace, "MAX_BUFFERS", 2)
    first = workspace.get(10, carve, cpu, "t")
    workspace.get(10, carve, cpu, "s")                  # "s" used last: "t" is dropped next
    workspace.get(10, carve, cpu, "u")
    assert set(workspace._local.buffers) == {(cpu, "s"), (cpu, "u")}
    assert workspace.get(10, carve, cpu, "t") is not first
    monkeypatch.setattr(workspace, "MAX_LAYOUTS", 2)
    views = [workspace.get(n, carve, cpu, "t") for n in (1, 2, 3)]
    assert workspace.get(3, carve, cpu, "t") is views[2]
    assert workspace.get(1, carve, cpu, "t") is not views[0]
    workspace.release()


def test_counters_are_zero_at_rest(monkeypatch):
    """Every launch leaves the counters it used at zero (chunked.arrive: a
    row's last program resets its arrival counter; narrow_row resets the
    histogram bins it read), so no call zeroes them first (workspace.py).
    After every call, through each launch form (per-row steps fused or
    launches of their own, top-p's draws in the stats tail or draw 0 checked
    alone first, the histogram bracket of ROCm), each buffer's counters are all zero, and the next call
    on the same views draws the reference's tokens."""
    import tokensampler.triton as tt
    from tokensampler.triton import workspace
    vocab, batch = 4096 + 5, 3                 # two chunks; the bracket needs V > 4096
    logits, probs = make_inputs(batch, vocab, seed=21)
    split = {"plan": 0, "narrow": 0, "select": 0, "draws": 64, "round0": 1 << 30}
    draw0_first = {**split, "draws": 0, "round0": 0}
    # (Where steps do not fuse, top-k's launches arrive nowhere: top-p only.)
    forms = (((True, tt.FUSE_ROWS), ("top_p", "top_k", "logits_kp"), (1, 2)),
             ((True, split), ("top_p", "top_k"), (1,)), ((True, draw0_first), ("top_p",), (1, 2)),
             ((False, tt.FUSE_ROWS), ("top_p",), (1,)))
    for (fuse_ok, rows), names, seeds in forms:
        monkeypatch.setattr(tt, "_FUSE_OK", fuse_ok)
        monkeypatch.setattr(tt, "FUSE_ROWS", rows)
        workspace.release()
        for name in names:
            fn = SAMPLERS[name]
            for seed in seeds:
                ref = fn(logits, probs, 7, 0.6, 0.1, 0.8, seed=seed, return_valid=True,
                         backend="reference")
                got = fn(logits, probs, 7, 0.6, 0.1, 0.8, seed=seed, return_valid=True,
                         backend="triton")
                assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
                bufs = workspace._local.buffers.values()
                left = [int(b.zeros.count_nonzero()) for b in bufs if b.zeros is not None]
                assert left and not any(left), (fuse_ok, rows, name, seed, left)
    # Flat rows and tiny p: top-p's rows decided in rejection rounds 1 and 2
    # (check launches whose programs each cover SPAN chunks) and by the
    # final race; their counters too end at zero.
    seen = []
    monkeypatch.setattr(tt, "inspect", seen.append)
    monkeypatch.setattr(tt, "_FUSE_OK", True)
    flat = torch.ones(2, vocab, device=DEVICE)
    p = torch.tensor([1e-4, 0.003], device=DEVICE)
    # Seed 1: decided in round 2 and by the final race; round 0's draws
    # checked at once, and draw 0 checked alone first.
    ref = ts.top_p_sampling_from_probs(flat, p, seed=1, backend="reference")
    for round0 in (1 << 30, 0):
        monkeypatch.setattr(tt, "FUSE_ROWS", {**tt.FUSE_ROWS, "draws": 0, "round0": round0})
        assert torch.equal(ts.top_p_sampling_from_probs(flat, p, seed=1, backend="triton"), ref)
        states = seen[-1].state.tolist()
        assert not any(int(b.zeros.count_nonzero()) for b in workspace._local.buffers.values())
        assert min(states) <= -4, states    # some row went past round 1 (state -2 - round)
    workspace.release()


def test_strided_per_row_tensors():
    """Per-output parameters, seeds, offsets and indices given as strided views
    (every other element of a longer tensor) read the same values as copies."""
    batch, vocab = 6, 111
    logits, probs = make_inputs(batch, vocab, 4)
    wide = [torch.stack([t, t.flip(0)], dim=1).flatten() for t in per_row(batch, vocab, 4)]
    params = [t[::2] for t in wide]
    assert not params[0].is_contiguous()
    seeds = (torch.arange(2 * batch, device=DEVICE) * 977 + 5)[::2]
    offsets = torch.arange(2 * batch, device=DEVICE)[::2]
    idx = torch.tensor([5, 0, 3, 3, 1, 2, 4, 0], device=DEVICE).repeat_interleave(2)[::2]
    for name, fn in SAMPLERS.items():
        for kw in (dict(seed=seeds, offset=offsets), dict(seed=seeds[:1], indices=idx[:batch])):
            ref = fn(logits, probs, *[p.contiguous() for p in params], return_valid=True,
                     backend="reference", **{k: v.contiguous() for k, v in kw.items()})
            got = fn(logits, probs, *params, return_valid=True, backend="triton", **kw)
            assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1]), (name, kw.keys())


def test_register_cap_follows_the_device(monkeypatch):
    """``maxnreg`` for k programs of w warps an SM comes from the device's
    registers per SM, rounded down to 8; none where that is unknown or off
    CUDA (the interpreter runs uncapped)."""
    from types import SimpleNamespace
    import tokensampler.triton as tt
    on_gpu = SimpleNamespace(device=SimpleNamespace(type="cuda"))
    monkeypatch.setattr(tt, "_regs_per_sm", lambda device: 65536)
    assert tt._reg_cap(on_gpu.device, 4, 8) == {"maxnreg": 64}    # H100: check_kernel
    assert tt._reg_cap(on_gpu.device, 3, 8) == {"maxnreg": 80}    # 85 rounded down
    assert tt._reg_cap(on_gpu.device, 3, 4) == {"maxnreg": 168}
    monkeypatch.setattr(tt, "_regs_per_sm", lambda device: 0)
    assert tt._reg_cap(on_gpu.device, 4, 8) == {}
    assert tt._reg_cap(torch.device("cpu"), 4, 8) == {}


def _chunk_fields(x, from_logits, chunk, group):
    """stats_kernel's partials of every chunk by their definition
    (chunked.py): (bad, kmax, kmin, amax, n_pos, n_max), (vmax, scale, acc)
    and the group maxima (32-token groups at top-k 50), from torch."""
    n, vocab = x.shape
    n_chunks = -(-vocab // chunk)
    pad = n_chunks * chunk - vocab
    past_end = float("-inf") if from_logits else 0.0
    v = torch.nn.functional.pad(x.float().cpu(), (0, pad), value=past_end)
    inb = torch.arange(n_chunks * chunk) < vocab
    bits = (v + 0.0).view(torch.int32)
    key = bits ^ ((bits >> 31) & 0x7FFFFFFF) if from_logits else bits
    nan, inf = v.isnan(), v == float("inf")
    bad_v = (nan | inf) if from_logits else (nan | inf | (v < 0))
    pos = inb & ~bad_v & ((v > float("-inf")) if from_logits else (v > 0))
    lo, hi = torch.iinfo(torch.int32).min, torch.iinfo(torch.int32).max
    shape = (n, n_chunks, chunk)
    key, pos, v = key.view(shape), pos.view(shape), v.view(shape)
    bad = (bad_v & inb).view(shape).any(2).int()
    kmax = torch.where(pos, key, lo).amax(2)
    kmin = torch.where(pos, key, hi).amin(2)
    at_max = pos & (key == kmax[..., None])
    cols = torch.arange(n_chunks * chunk, dtype=torch.int32).view(1, n_chunks, chunk)
    amax = torch.where(at_max, cols, hi).amin(2)
    ints = torch.stack([bad, kmax, kmin, amax, pos.sum(2, dtype=torch.int32),
                        at_max.sum(2, dtype=torch.int32)], 2)
    vmax = torch.where(pos, v, float("-inf")).amax(2)
    if from_logits:
        scale = vmax
        safe = torch.where(vmax == float("-inf"), 0.0, vmax)
        acc = torch.where(pos, (v - safe[..., None]).exp(), 0.0).sum(2)
    else:
        e = ((vmax.clamp(min=0.0).view(torch.int32) >> 23) & 0xFF) - 127
        e = e.clamp(max=126)
        scale = e.float()
        acc = (torch.where(pos, v, 0.0).double() * torch.pow(2.0, -e.double())[..., None]).sum(2)
    gm = torch.where(pos, key, lo).view(n, n_chunks, chunk // group, group).amax(3)
    return ints, torch.stack([vmax, scale, acc.float()], 2), gm


@pytest.mark.parametrize("from_logits", [False, True], ids=["probs", "logits"])
def test_chunk_statistics_match_their_definition(from_logits, monkeypatch):
    """Every partial of stats_kernel, per chunk, against its definition:
    chunks without NaN, infinity or negative weight take the mask-free
    reductions, the others the exact per-token tests. Rows with zero
    weights (or -inf logits), -0.0, denormals, ties at the maximum across
    chunks, an all-zero chunk, a partial last chunk, and bad values."""
    import tokensampler.triton as tt
    seen = []
    monkeypatch.setattr(tt, "inspect", seen.append)
    vocab, batch, chunk = 2 * 4096 + 100, 7, 4096
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(batch, vocab, generator=g) * 3
    if from_logits:
        x, none, bad = logits, float("-inf"), float("inf")
    else:
        x, none, bad = torch.softmax(logits, dim=1), 0.0, -0.5
    x[1, :300] = none                          # no weight, in chunk 0
    x[1, 4096:4200] = -0.0                     # -0.0 is 0 weight (probs) / a logit of 0
    x[2, 4096:] = torch.rand(vocab - 4096, generator=g) * 1e-39 if not from_logits else -80.0
    x[3, 2 * 4096:] = none                     # the partial last chunk holds no weight
    x[4, 5] = x[4, 4100] = x[4, 8200] = x.max() + 1.0   # ties at the maximum, three chunks
    x[5, 4500] = float("nan")                  # bad: chunk 1 takes the exact path
    x[6, 10] = bad
    x[6, 8190] = none
    if from_logits:
        ts.top_k_top_p_sampling_from_logits(x.to(DEVICE), 20, None, seed=1, backend="triton")
    else:
        ts.top_k_sampling_from_probs(x.to(DEVICE), 20, seed=1, backend="triton")
    (ws,) = seen
    ints, floats, gm = _chunk_fields(x, from_logits, chunk, 32)
    got_i = ws.part_i.cpu().view(batch, -1, 6)
    got_f = ws.part_f.cpu().view(batch, -1, 3)
    assert torch.equal(got_i, ints), (got_i != ints).nonzero().tolist()[:8]
    assert torch.equal(ws.gm.cpu().view(gm.shape), gm)
    assert torch.equal(got_f[..., :2], floats[..., :2])    # vmax and scale: exact
    torch.testing.assert_close(got_f[..., 2], floats[..., 2], rtol=2e-6, atol=0.0)


def test_compact_reads_every_listed_group(monkeypatch):
    """Top-k's candidates come from plan_row's list of the groups whose
    maximum reaches the bound, a slice of G = 128 groups a compact program:
    the list is those groups in order, and every positive token at or above
    the bound is a candidate, once, with its own key, whether the list takes
    one slice or two (9000 tokens, 282 groups; k groups reach the bound, so
    k = 3, 200, and 150 in a row whose last 63 groups hold no weight)."""
    import tokensampler.triton as tt
    seen = []
    monkeypatch.setattr(tt, "inspect", seen.append)
    vocab = 9000
    x = torch.softmax(torch.randn(3, vocab, generator=torch.Generator().manual_seed(5)), 1)
    x[2, 7000:] = 0.0                          # groups with no weight are never listed
    k = torch.tensor([3, 200, 150])
    ts.top_k_sampling_from_probs(x.to(DEVICE), k.to(DEVICE), seed=1, backend="triton")
    (ws,) = seen
    key = x.view(torch.int32)                  # probs: the order key is the bit pattern
    plan = ws.plan.cpu().view(3, 4)
    lists = ws.gl.cpu().view(3, -1)
    gm = ws.gm.cpu().view(3, -1)
    slices = []
    for j in range(3):
        bound, n_groups = plan[j, 0].item(), plan[j, 2].item()
        want = (gm[j] >= bound).nonzero().flatten().to(torch.int32)
        assert torch.equal(lists[j, :n_groups], want), j
        # The bound: at most the k-th largest group maximum (so the top k
        # tokens are candidates), and within 2**-BISECT_STEPS of the key
        # interval below it (so few others are).
        positive = key[j][x[j] > 0]
        width = positive.max().item() - positive.min().item()
        kth = gm[j].sort(descending=True).values[k[j] - 1].item()
        assert kth - (width >> tt.chunked.BISECT_STEPS.value) - 1 <= bound <= kth, (j, bound, kth)
        above = ((key[j] >= bound) & (x[j] > 0)).nonzero().flatten()
        assert len(above) >= k[j].item()
        assert ws.count[j].item() == len(above) <= ws.cap, (j, ws.count[j].item(), len(above))
        packed = ws.cand.cpu().view(3, ws.cap)[j, :len(above)]
        index = 0xFFFFFFFF - (packed & 0xFFFFFFFF)
        assert torch.equal(index.sort().values, above), j
        assert torch.equal(packed >> 32, key[j, index].long()), j
        slices.append(-(-n_groups // 128))
    assert slices == [1, 2, 2], slices


class _Param:
    def __init__(self, name, constexpr, default=None):
        self.name, self.is_constexpr, self.default = name, constexpr, default


class _StandInKernel:
    """A JIT function to the launcher: ``kernel[grid](...)`` records Triton's
    path and returns a compiled variant whose ``run`` records direct launches."""

    def __init__(self, log):
        self.fn = SimpleNamespace(__name__="stand_in")
        self.params = [_Param("x", False), _Param("n", False), _Param("p", False),
                       _Param("A", True), _Param("B", True, default=7)]
        self.log = log

    def __getitem__(self, grid):
        def run(*args, **kwargs):
            self.log.append(("triton", grid, args, kwargs))
            compiled = SimpleNamespace(function="fn", packed_metadata="meta")
            compiled.run = lambda *a: self.log.append(("direct", a))
            return compiled
        return run


def test_direct_launch_reuses_a_variant_only_when_triton_would(monkeypatch):
    """launcher.launch remembers the compiled variant of each (key, launch
    number) and launches it directly next time, but only for the same kernel
    with equal compile-time arguments, argument types and int classes (== 1,
    multiple of 16, 32/64-bit: Triton's specialisations). Anything else goes
    back to Triton's path; a launcher that rejects the arguments turns the
    direct path off. (On the GPU, test_gpu.py checks tokens both ways.)"""
    launcher, log, kernel, x = _stand_in_launcher(monkeypatch)

    def call(n=5, p=0.5, A=3, key="k", grid=(2, 3), **kw):
        launcher.plan(key)
        launcher.launch(kernel, grid, x, n, p, A=A, num_warps=4, **kw)
        return log[-1][0]

    assert call() == "triton"
    assert call() == "direct"
    assert log[-1] == ("direct", (2, 3, 1, "stream", "fn", "meta", None, None, None,
                                  x, 5, 0.5, 3, 7))   # B's default filled in
    assert call(n=21) == "direct"            # same class: neither 1 nor a multiple of 16
    assert call(n=32) == "triton"            # multiple of 16
    assert call(n=32) == "direct"
    assert call(n=1) == "triton"             # specialised as the constant 1
    assert call(n=1 << 40) == "triton"       # 64-bit
    assert call(n=1 << 40) == "direct"
    assert call(n=1 << 63) == "triton"       # unsigned 64-bit (else as 1 << 40)
    assert call() == "triton"
    assert call(grid=(6,)) == "direct"       # a 1-D grid: the others are 1
    assert log[-1][1][:3] == (6, 1, 1)
    assert call() == "direct"
    assert call(p=x) == "triton"             # a tensor where a float was
    assert call() == "triton" and call() == "direct"
    assert call(A=4) == "triton"             # another compile-time value
    assert call(A=4) == "direct"
    assert call(A=4, B=7) == "triton"        # the same values, spelt differently
    other = _StandInKernel(log)
    launcher.plan("k")
    launcher.launch(other, (2, 3), x, 5, 0.5, A=4, B=7, num_warps=4)
    assert log[-1][0] == "triton"            # another kernel at the same launch number
    assert call(key=None) == "triton"        # no key: never remembered
    assert call(key=None) == "triton"
    monkeypatch.setattr(launcher, "DIRECT", False)
    assert call() == "triton" and call() == "triton"
    monkeypatch.setattr(launcher, "DIRECT", True)
    assert call() == "triton" and call() == "direct"
    monkeypatch.setattr(launcher, "_knobs", SimpleNamespace(
        launch_enter_hook=SimpleNamespace(calls=[print]), launch_exit_hook=None))
    assert call() == "triton"                # a profiler's hook: Triton's path

    def rejects(*a):
        raise TypeError("launch() takes other arguments")
    monkeypatch.setattr(launcher, "_knobs", SimpleNamespace(
        launch_enter_hook=SimpleNamespace(calls=[]), launch_exit_hook=None))
    assert call() == "direct"                # an empty HookChain (Triton 3.5 on) is no hook
    (site,) = launcher._sites.values()
    site.run, site.proven = rejects, False   # as on a Triton whose launcher differs
    assert call() == "triton" and launcher.DIRECT is False
    from tokensampler import info
    assert info.direct_launch().startswith("off (this Triton's launcher rejected")
    monkeypatch.setenv("TOKENSAMPLER_DIRECT_LAUNCH", "0")
    assert "direct launches: off (TOKENSAMPLER_DIRECT_LAUNCH=0)" in info.render(info.collect())


def test_samples_without_their_valid_flags_are_the_same():
    """Without ``return_valid`` the Triton backend writes the flags into its
    workspace instead of a tensor of their own (one allocation less a
    call): the tokens must still be the reference's, for top-p alone (its
    own workspaces) and the other paths, with more outputs than rows."""
    logits, probs = make_inputs(2, 300, 8)
    idx = torch.tensor([1, 0, 1], device=DEVICE)   # more outputs than rows
    for name in ("top_p", "top_k", "probs", "min_p", "kp_joint", "logits_kp"):
        fn = SAMPLERS[name]
        args = (logits, probs, 50, 0.5, 0.1, 0.7)
        for kw in ([dict(seed=3, indices=idx)]
                   + [dict(seed=3)] * (name in ("top_p", "top_k"))):
            got = fn(*args, backend="triton", **kw)
            assert torch.equal(got, fn(*args, backend="reference", **kw)), (name, kw)
    # The flags' view overlaps no other workspace of its layout (they are
    # written last, so an overlap would not show in the tokens above; it
    # would clobber the counters kept zero at rest, or a later call's data).
    from tokensampler.triton import workspace
    checked = 0
    for buf in workspace._local.buffers.values():
        for views, _ in buf.views.values():
            flags = views.valid
            lo, hi = flags.data_ptr(), flags.data_ptr() + flags.numel()
            for other, t in vars(views).items():
                start = t.data_ptr()
                if other != "valid" and t.numel():
                    assert start + t.numel() * t.element_size() <= lo or start >= hi, other
            checked += 1
    assert checked >= 2


def test_a_call_whose_launches_all_went_directly_makes_its_key_ready(monkeypatch):
    """A complete key's call whose every launch went directly makes the key
    ready: its next call launches the remembered variants in order, and
    may pass tensors as addresses (ints), which only those variants take.
    A call with a launch on Triton's path, one that stopped before
    ``finish`` or one under a profiler's hook does not; a ready call whose
    launches differ from its key's previous call's (another kernel, one
    launch more) is a bug in the key, and raises rather than hand an
    address to Triton's path."""
    launcher, log, kernel, x = _stand_in_launcher(monkeypatch)
    other = _StandInKernel(log)

    def call(key="k", launches=2, finish=True, x=x, kernel2=kernel):
        launcher.plan(key, complete=True)
        was_ready = launcher.ready()
        launcher.launch(kernel, (2,), x, 5, 0.5, A=3, num_warps=4)
        if launches == 2:
            launcher.launch(kernel2, (3,), x, 6, 0.25, A=3, num_warps=4)
        if finish:
            launcher.finish()
        return was_ready, [entry[0] for entry in log[-launches:]]

    assert call() == (False, ["triton", "triton"])
    assert call() == (False, ["direct", "direct"])   # proven here: each went directly
    before = launcher.counts["ready"]
    assert call(x=x.data_ptr()) == (True, ["direct", "direct"])
    assert launcher.counts["ready"] - before == 2
    assert log[-1][1][9] == x.data_ptr()            # the address, as given
    from tokensampler.triton import workspace
    fresh = SimpleNamespace(a=torch.zeros(3))
    held = workspace.addresses_of(fresh)            # fresh tensors live while it does
    assert held.a == fresh.a.data_ptr() and held.tensors is fresh
    with pytest.raises(RuntimeError, match="does not fix its launches"):
        call(kernel2=other)                        # another kernel at launch 1
    with pytest.raises(RuntimeError, match="does not fix its launches"):
        launcher.plan("k", complete=True)          # other compile-time arguments
        launcher.launch(kernel, (2,), x, 5, 0.5, A=4, num_warps=4)
    with pytest.raises(RuntimeError, match="made 1 launches where"):
        call(launches=1)                           # a launch fewer than its program
    launcher.plan("k", complete=True)
    kernel.pre_run_hooks = [print]                 # added by another thread mid-call
    with pytest.raises(RuntimeError, match="pre-run hook was added"):
        launcher.launch(kernel, (2,), x.data_ptr(), 5, 0.5, A=3, num_warps=4)
    del kernel.pre_run_hooks
    assert call()[0] is True
    launches = []                                  # warmup's compile pass sees tensors
    with launcher.collecting(launches):
        assert call(finish=False)[0] is False
    assert isinstance(launches[0][2][0], torch.Tensor)
    # Each of these leaves its key not ready.
    assert call("a") == (False, ["triton", "triton"]) and call("a", finish=False)[0] is False
    assert call("a")[0] is False                   # the last call did not finish
    assert call("c") == (False, ["triton", "triton"])
    assert call("c", kernel2=other) == (False, ["direct", "triton"])   # one direct, one not
    assert call("c")[0] is False
    assert call("b", launches=1) == (False, ["triton"])
    assert call("b", launches=1) == (False, ["direct"]) and call("b", launches=1)[0] is True
    with pytest.raises(RuntimeError, match="does not fix its launches"):
        call("b")                                  # a launch more than its program
    monkeypatch.setattr(launcher, "_knobs", SimpleNamespace(
        launch_enter_hook=SimpleNamespace(calls=[print]), launch_exit_hook=None))
    assert call()[0] is False                      # a profiler's hook: checked launches
    monkeypatch.setattr(launcher, "_knobs", SimpleNamespace(launch_enter_hook=None,
                                                            launch_exit_hook=None))
    assert call()[0] is True
    kernel.pre_run_hooks = [print]                 # a kernel's own hook: Triton's path
    assert call() == (False, ["triton", "triton"])
    kernel.pre_run_hooks = []
    assert call()[0] is True
    monkeypatch.setattr(launcher, "DIRECT", False)
    assert call() == (False, ["triton", "triton"])


class _CudaLauncherLike:
    """Triton 3.6's CudaLauncher as far as _c_launch looks at it."""

    def __init__(self, log, scratch=0):
        self.global_scratch_size, self.profile_scratch_size = scratch, 0
        self.launch_cooperative_grid, self.launch_pdl = False, True
        self.launch = lambda *a: log.append(("C", a))
        self.log = log

    def __call__(self, gridX, gridY, gridZ, stream, function, *args):
        self.log.append(("wrapper", (gridX, gridY, gridZ, stream, function, *args)))


def test_the_c_launcher_is_called_directly_only_where_the_wrapper_is_known(monkeypatch):
    """On Triton 3.6 a direct launch calls the compiled variant's C launcher
    itself, with the arguments its Python wrapper would have added for a
    kernel without scratch memory; elsewhere (another release, scratch
    memory, another wrapper signature) it calls the wrapper."""
    import triton
    from tokensampler.triton import launcher
    log = []
    CudaLauncher = type("CudaLauncher", (_CudaLauncherLike,), {})
    monkeypatch.setattr(triton, "__version__", "3.6.0")
    c, head = launcher._c_launch(CudaLauncher(log), "meta")
    assert c is not None and head == (False, True, None, None, "meta", None, None, None)
    assert launcher._c_launch(CudaLauncher(log, scratch=64), "meta") == (None, None)
    assert launcher._c_launch(_CudaLauncherLike(log), "meta") == (None, None)   # another name

    class Other(CudaLauncher):
        def __call__(self, gridX, gridY, gridZ, stream, function, kernel_metadata, *args):
            pass
    Other.__name__ = "CudaLauncher"
    assert launcher._c_launch(Other(log), "meta") == (None, None)   # another signature
    bare = CudaLauncher(log)
    del bare.launch_pdl
    assert launcher._c_launch(bare, "meta") == (None, None)          # an attribute missing
    profiled = CudaLauncher(log)
    profiled.profile_scratch_size = 8
    assert launcher._c_launch(profiled, "meta") == (None, None)
    monkeypatch.setattr(triton, "__version__", "3.9.0")
    assert launcher._c_launch(CudaLauncher(log), "meta") == (None, None)
    # Called the way Triton 3.6's wrapper calls it, by _run.
    monkeypatch.setattr(triton, "__version__", "3.6.0")
    compiled = SimpleNamespace(run=CudaLauncher(log), function="fn", packed_metadata="meta")
    site = launcher._Site(None, {}, (), (), compiled, (3, 7), "stage")
    monkeypatch.setattr(launcher._local, "stream", "stream", raising=False)
    launcher._run(site, (2, 5), ("x", 4))
    assert log[-1] == ("C", (2, 5, 1, "stream", "fn", False, True, None, None, "meta", None,
                             None, None, "x", 4, 3, 7))
    site.c = None
    launcher._run(site, (2, 5), ("x", 4))
    assert log[-1] == ("wrapper", (2, 5, 1, "stream", "fn", "meta", None, None, None, "x", 4,
                                   3, 7))
    # A C function that rejects the arguments on first use: the wrapper
    # instead, and direct launches stay on.
    launcher_, log2, kernel, x = _stand_in_launcher(monkeypatch)

    def rejects(*a):
        raise TypeError("launch() takes other arguments")
    launcher.plan("k", complete=True)
    launcher.launch(kernel, (2,), x, 5, 0.5, A=3, num_warps=4)   # Triton's path
    (site,) = launcher._sites.values()
    site.c, site.c_head = rejects, ()
    launcher.plan("k", complete=True)
    launcher.launch(kernel, (2,), x, 5, 0.5, A=3, num_warps=4)
    assert log2[-1][0] == "direct" and site.c is None and site.proven and launcher.DIRECT


def test_warmup_compile_pass_records_launches_and_compiles_each_variant_once(monkeypatch):
    """warmup's first pass (launcher.collecting) records launches instead of
    launching them, and compile_all compiles each distinct variant once, in
    worker threads: launches that differ only in grid, int values of one
    specialisation class or tensors of one dtype and alignment share a
    variant; a constexpr, an int class, a dtype or an alignment apart do
    not. Through a real sampler, every launch of the call is recorded."""
    import threading
    import tokensampler.triton as tt
    from tokensampler.triton import launcher
    log, warmed = [], []
    kernel = _StandInKernel(log)
    kernel.warmup = lambda *a, grid, **kw: warmed.append((a, kw, threading.current_thread()))
    x, x2 = torch.zeros(8), torch.ones(8)
    shifted = torch.zeros(9)[1:]                 # 4 bytes off 16-byte alignment
    launches = []
    with launcher.collecting(launches):
        launcher.launch(kernel, (2,), x, 5, 1.0, A=1)
        launcher.launch(kernel, (4,), x2, 7, 2.0, A=1)            # the same variant
        launcher.launch(kernel, (2,), x, 16, 1.0, A=1)            # int class
        launcher.launch(kernel, (2,), x, 5, 1.0, A=2)             # constexpr
        launcher.launch(kernel, (2,), x.half(), 5, 1.0, A=1)      # dtype
        launcher.launch(kernel, (2,), shifted, 5, 1.0, A=1)       # alignment
    assert log == [] and len(launches) == 6      # recorded, not launched
    assert launcher.compile_all(launches, threads=3) == 5
    assert len(warmed) == 5
    assert all(t is not threading.main_thread() for *_, t in warmed)
    launcher.launch(kernel, (2,), x, 5, 1.0, A=1)
    assert log[-1][0] == "triton"                # outside the pass, launches launch
    monkeypatch.setattr(tt, "FUSE_ROWS", {"plan": 2, "narrow": 2, "select": 2, "draws": 0,
                                          "round0": 2})
    probs = torch.softmax(torch.randn(3, 40), 1).to(DEVICE)
    names = []
    monkeypatch.setattr(launcher, "compile_all",
                        lambda launches, threads: names.extend(k.fn.__name__ for k, *_ in launches))
    tt.precompile(lambda: ts.top_k_sampling_from_probs(probs, 5, seed=1, backend="triton"), 2)
    assert names == ["stats_kernel", "plan_kernel", "compact_kernel", "select_kernel"], names


@pytest.mark.parametrize("fuse_ok", [True, False])
def test_launch_variants_do_not_depend_on_the_batch(fuse_ok, monkeypatch):
    """Triton specialises pointers on 16-byte alignment. Workspace slices
    that started n entries into a buffer made the compiled variant depend on
    the batch mod 4, so a warmed server compiled again at its first batch of
    1, 4 or 16 (independent review, eleventh session). Every launch of every
    sampler, in either launch form, must pass tensors of the same dtypes and
    alignments at every batch. (Launches recorded, not made: no kernel runs.)"""
    import tokensampler.triton as tt
    from tokensampler.triton import launcher
    monkeypatch.setattr(tt, "FUSE_ROWS", {"plan": 2, "narrow": 2, "select": 2, "draws": 2,
                                          "round0": 2})
    monkeypatch.setattr(tt, "_FUSE_OK", fuse_ok)
    calls = {"top_k": lambda x, lg: ts.top_k_sampling_from_probs(x, 5, seed=1, backend="triton"),
             "joint_logits": lambda x, lg: ts.top_k_top_p_sampling_from_logits(
                 lg, 5, 0.9, seed=1, backend="triton"),
             "top_p": lambda x, lg: ts.top_p_sampling_from_probs(x, 0.9, seed=1, backend="triton"),
             "min_p": lambda x, lg: ts.min_p_sampling_from_probs(x, 0.1, seed=1, backend="triton"),
             "plain": lambda x, lg: ts.sampling_from_probs(x, seed=1, backend="triton")}
    for vocab in (40, 5000):
        for name, call in calls.items():
            seen = {}
            for batch in range(1, 10):
                logits = torch.randn(batch, vocab).to(DEVICE)
                launches = []
                with launcher.collecting(launches):
                    call(torch.softmax(logits, 1), logits)
                form = batch <= 2
                sig = [(k.fn.__name__, [launcher._signature(a) for a in args
                                        if isinstance(a, torch.Tensor)])
                       for k, _grid, args, _kw in launches]
                assert seen.setdefault(form, sig) == sig, (vocab, name, batch)


def test_tensor_subclass_parameters_are_per_request():
    """A per-request parameter may arrive as a tensor subclass (an
    ``nn.Parameter`` an engine keeps its settings in); it must take the
    per-request path, and its alignment must enter the call key like a plain
    tensor's (launcher.py: the key fixes every caller pointer's alignment)."""
    import tokensampler.triton as tt
    g = torch.Generator().manual_seed(4)
    probs = torch.softmax(torch.randn(4, 64, generator=g), 1).to(DEVICE)
    p = torch.nn.Parameter(torch.tensor([0.5, 0.25, 1.0, 0.75], device=DEVICE), requires_grad=False)
    k = torch.nn.Parameter(torch.tensor([3, 1, 64, 10], device=DEVICE), requires_grad=False)
    for call in (lambda b: ts.top_p_sampling_from_probs(probs, p, seed=3, backend=b),
                 lambda b: ts.top_k_sampling_from_probs(probs, k, seed=3, backend=b)):
        assert torch.equal(call("triton"), call("reference"))
    store = torch.zeros(9)
    assert tt._spec(store[1:]) != tt._spec(store[:8]) and tt._spec(store[4:]) == tt._spec(store[:5])
    assert tt._spec(p) == (torch.float32, p.data_ptr() & 15, 4)


def test_denormal_temperature_matches_reference():
    """A temperature that is a float32 denormal still means softmax(logits /
    t): where ``1 / t`` overflowed, the kernels' weight of the largest logit
    was NaN and they drew token 0 (independent review, fourteenth session;
    row.inverse_temperature). The largest logit takes all the weight; tied
    largest logits share it (sampled among, unlike greedy's lowest index);
    the softmax filter gives the same one-hot and halves."""
    logits = torch.tensor([[0.5, 2.0, 1.0, -1.0], [2.0, -3.0, 2.0, 1.0]], device=DEVICE)
    idx = torch.tensor([0, 1, 1, 1, 1, 1, 1, 1], device=DEVICE)
    for t in (1e-39, 1e-45, 2e-38):
        kw = dict(indices=idx, temperature=t, seed=5, return_valid=True)
        ref = ts.sampling_from_logits(logits, backend="reference", **kw)
        got = ts.sampling_from_logits(logits, backend="triton", **kw)
        assert ref[0][0] == 1 and set(ref[0][1:].tolist()) == {0, 2}, ref
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1]), t
        ref = ts.top_k_top_p_sampling_from_logits(logits, 3, 0.9, backend="reference", **kw)
        got = ts.top_k_top_p_sampling_from_logits(logits, 3, 0.9, backend="triton", **kw)
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1]), t
        soft = ts.softmax(logits, temperature=t, backend="triton")
        assert soft.tolist() == [[0.0, 1.0, 0.0, 0.0], [0.5, 0.0, 0.5, 0.0]], (t, soft)
