"""Full-size checks on a real GPU (marker ``gpu``; skipped where there is none).

Run on the device machine with ``pytest -m gpu tests/test_gpu.py``. The
reference backend runs on the GPU too, so comparisons stay fast.

Under compute-sanitizer, set ``TOKENSAMPLER_SANITIZE=1``: batches shrink to 8
rows (every vocabulary size stays), the frequency test draws 10**5 times, and
the tests that leave a kernel spinning are skipped (docs/reliability.md).
"""

import math
import os
import time

import pytest
import torch

import tokensampler as ts
from test_triton import SAMPLERS, assert_filter_matches

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA/ROCm GPU")]
DEV = "cuda"
SANITIZE = os.environ.get("TOKENSAMPLER_SANITIZE") == "1"
no_sanitizer = pytest.mark.skipif(SANITIZE, reason="leaves a kernel spinning; not under a sanitizer")


def _rows(batch):
    return min(batch, 8) if SANITIZE else batch


def inputs(batch, vocab, seed, dtype=torch.float32, scale=3.0):
    g = torch.Generator(device=DEV).manual_seed(seed)
    logits = torch.randn(batch, vocab, generator=g, device=DEV) * scale
    logits = logits.to(torch.bfloat16).float()
    logits[:, 1::7] = -float("inf")
    return logits.to(dtype), torch.softmax(logits, dim=1).to(dtype)


def params(batch, vocab, seed):
    g = torch.Generator(device=DEV).manual_seed(seed)
    k = torch.randint(-2, vocab + 2, (batch,), generator=g, device=DEV)
    k = torch.where(torch.rand(batch, generator=g, device=DEV) < 0.5, k % 2000, k)
    p = torch.rand(batch, generator=g, device=DEV)
    p = torch.where(p < 0.1, 0.0, torch.where(p > 0.9, 1.0, p))
    m = torch.rand(batch, generator=g, device=DEV) * 0.5
    t = torch.rand(batch, generator=g, device=DEV) * 2
    t = torch.where(t < 0.1, 0.0, t)
    return k, p, m, t


def check(vocab, batch, seed, dtype=torch.float32, names=tuple(SAMPLERS)):
    batch = _rows(batch)
    logits, probs = inputs(batch, vocab, seed, dtype)
    k, p, m, t = params(batch, vocab, seed)
    seeds = dict(seed=torch.arange(batch, device=DEV) + seed, offset=torch.full((batch,), 3, device=DEV))
    total = mismatched = 0
    for name in names:
        fn = SAMPLERS[name]
        ref, rv = fn(logits, probs, k, p, m, t, return_valid=True, backend="reference", **seeds)
        got, gv = fn(logits, probs, k, p, m, t, return_valid=True, backend="triton", **seeds)
        assert torch.equal(gv, rv), name
        total += batch
        mismatched += int((got != ref).sum())
    return total, mismatched


FEW = ("logits", "top_p", "logits_kp_joint")  # small sizes and half inputs: compile less


@pytest.mark.parametrize("vocab, batch, names", [
    (32000, 1024, tuple(SAMPLERS)), (128256, 256, tuple(SAMPLERS)), (151936, 99, tuple(SAMPLERS)),
    (262144, 64, tuple(SAMPLERS)), (111, 1024, FEW), (1, 3, FEW)])
def test_large_sizes_match_reference(vocab, batch, names):
    total, bad = check(vocab, batch, seed=vocab % 1000 + batch, names=names)
    assert bad <= max(1, total // 10000), f"{bad} of {total} tokens differ"


def test_large_scalar_top_k_in_smaller_groups():
    """A scalar top_k that would make more than CAP / 2 candidates with
    32-token groups reads groups of 16 (k=1000 at V=32000, 2000 at 128256)
    or 8 (k=1500 at 32000; triton._group): their compiled variants match the
    reference token for token, fused (64 outputs) and as launches of their
    own (99), bf16 too."""
    import tokensampler.triton as tt
    for vocab, k, batch, dtype in ((32000, 1000, 64, torch.float32),
                                   (32000, 1500, 99, torch.bfloat16),
                                   (128256, 2000, 99, torch.float32)):
        assert tt._group(vocab, k) < tt.GROUP
        logits, probs = inputs(batch, vocab, 3, dtype)
        for name in ("top_k", "logits_kp"):
            fn = SAMPLERS[name]
            ref = fn(logits, probs, k, 0.9, 0.1, 0.7, seed=8, return_valid=True,
                     backend="reference")
            got = fn(logits, probs, k, 0.9, 0.1, 0.7, seed=8, return_valid=True,
                     backend="triton")
            assert torch.equal(got[1], ref[1]), (vocab, k, batch, name)
            assert torch.equal(got[0], ref[0]), (vocab, k, batch, name)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_an_input_on_a_device_that_is_not_current():
    """With cuda:0 current and the input on cuda:1, the kernels, the memsets
    and the workspaces all go to cuda:1 (triton._device_of): the tokens and
    filters match the reference, and cuda:0 stays current."""
    vocab, batch = 32000, 5
    with torch.cuda.device(0):
        g = torch.Generator(device="cuda:1").manual_seed(4)
        logits = torch.randn(batch, vocab, generator=g, device="cuda:1") * 3
        probs = torch.softmax(logits, dim=1)
        for name in ("probs", "top_p", "top_k", "logits_kp"):
            fn = SAMPLERS[name]
            for _ in range(2):   # the second call reuses the workspaces
                ref = fn(logits, probs, 50, 0.9, 0.1, 0.7, seed=3, return_valid=True,
                         backend="reference")
                got = fn(logits, probs, 50, 0.9, 0.1, 0.7, seed=3, return_valid=True,
                         backend="triton")
                assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1]), name
        ref = ts.top_k_renorm_probs(probs, 50, backend="reference")
        got = ts.top_k_renorm_probs(probs, 50, backend="triton")
        assert got.device == probs.device
        assert_filter_matches(got, ref, "top_k_renorm_probs")
        assert torch.cuda.current_device() == 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs(dtype):
    total, bad = check(128256, 128, seed=2, dtype=dtype, names=FEW)
    assert bad <= max(1, total // 10000)


def test_offsets_beyond_int32():
    """B x V > 2**31: rows far into the tensor are addressed with 64-bit offsets."""
    vocab, batch = 262144, 8200
    x = torch.zeros(batch, vocab, dtype=torch.float16, device=DEV)
    x[:, 5] = 1.0
    x[-1, 5] = 0.0
    x[-1, vocab - 3] = 2.0
    x[-2, vocab - 1] = 1.0
    idx = torch.tensor([batch - 1, batch - 2, 0], device=DEV)
    out = ts.top_p_sampling_from_probs(x, 0.9, indices=idx, seed=1, backend="triton")
    ref = ts.top_p_sampling_from_probs(x, 0.9, indices=idx, seed=1, backend="reference")
    assert torch.equal(out, ref)
    assert out[0].item() == vocab - 3 and out[2].item() == 5


def test_fused_and_separate_steps_agree_bitwise(monkeypatch):
    """Top-p alone draws by chunk-parallel rejection where per-row steps fuse
    (CUDA; round 0's draws in the stats tail up to FUSE_ROWS["draws"] outputs,
    in a launch of their own above; draw 0 checked alone first above
    FUSE_ROWS["round0"]) and through the histogram bracket and
    the single-program rejection where they do not (ROCm); joint top-k + top-p fuses its steps
    or launches them separately. Each pair must give every row the same
    token, on a GPU where the fused form's programs arrive in any order."""
    import tokensampler.triton as tt
    batch, vocab = _rows(40), 128256
    logits, probs = inputs(batch, vocab, 21, scale=1.0)
    k, p, _m, t = params(batch, vocab, 21)
    seeds = dict(seed=torch.arange(batch, device=DEV) + 9, offset=torch.full((batch,), 1, device=DEV))
    calls = (lambda: ts.top_p_sampling_from_probs(probs, p, return_valid=True, **seeds),
             lambda: ts.top_k_top_p_sampling_from_logits(logits, None, p, temperature=t,
                                                         return_valid=True, **seeds),
             lambda: ts.top_k_top_p_sampling_from_logits(logits, k, p, temperature=t,
                                                         return_valid=True, **seeds))
    for call in calls:
        results = []
        # Round 0's draws in their own launch, in the stats tail, draw 0
        # checked alone first (as above FUSE_ROWS["round0"] outputs), and
        # the path without fused steps.
        for fuse, draws, round0 in ((True, 0, 1 << 30), (True, 1 << 30, 1 << 30), (True, 0, 0),
                                    (False, 0, 0), (True, 0, 1 << 30)):
            monkeypatch.setattr(tt, "_FUSE_OK", fuse)
            monkeypatch.setattr(tt, "FUSE_ROWS", {**tt.FUSE_ROWS, "draws": draws,
                                                  "round0": round0})
            results.append(call())
        for got in results[1:]:
            for a, b in zip(got, results[0]):
                assert torch.equal(a, b)


def test_direct_launches_agree_with_tritons_path(monkeypatch):
    """Repeat calls skip Triton's argument binding (launcher.py): a launch
    seen before under the same call key goes straight to the remembered
    compiled variant. Calls with scalar and per-request parameters, an input
    4 bytes off 16-byte alignment, and top_k of 1, 16 and 50 (Triton
    specialises ints on == 1 and on multiples of 16), interleaved, must give
    bitwise the tokens of Triton's own path, and the second round must be
    launched directly. So must a row stride that is not a multiple of 16,
    99 outputs (per-row steps as launches of their own), plain and min-p,
    indices, and per-request tensors 4 bytes off alignment. (Few samplers:
    the full set compiled for over 4 minutes.)"""
    from tokensampler.triton import launcher
    batch, vocab = _rows(40), 128256
    logits, probs = inputs(batch, vocab, 5, scale=1.0)
    off_l = torch.empty(batch * vocab + 1, device=DEV)[1:].view(batch, vocab)
    off_p = torch.empty(batch * vocab + 1, device=DEV)[1:].view(batch, vocab)
    off_l.copy_(logits)
    off_p.copy_(probs)
    assert off_l.data_ptr() % 16 == 4 and off_p.data_ptr() % 16 == 4
    wide_l = torch.empty(batch, vocab + 8, device=DEV)[:, :vocab]
    wide_p = torch.empty(batch, vocab + 8, device=DEV)[:, :vocab]
    wide_l.copy_(logits)
    wide_p.copy_(probs)
    k, p, m, t = params(batch, vocab, 5)
    seeds = dict(seed=torch.arange(batch, device=DEV) + 3, offset=torch.full((batch,), 2, device=DEV))
    cases = []
    for name in ("top_p", "top_k", "logits_kp"):
        fn = SAMPLERS[name]
        for kk in (1, 16, 50):
            cases.append(lambda fn=fn, kk=kk: fn(logits, probs, kk, 0.9, 0.1, 0.7, seed=11,
                                                 return_valid=True, backend="triton"))
        cases.append(lambda fn=fn: fn(logits, probs, k, p, m, t, return_valid=True,
                                      backend="triton", **seeds))
        cases.append(lambda fn=fn: fn(off_l, off_p, 50, 0.9, 0.1, 0.7, seed=11,
                                      return_valid=True, backend="triton"))
        # A row stride of another int class (128264: not a multiple of 16),
        # which the call's key must tell apart (launcher.plan, complete).
        cases.append(lambda fn=fn: fn(wide_l, wide_p, 50, 0.9, 0.1, 0.7, seed=11,
                                      return_valid=True, backend="triton"))
    # Above FUSE_ROWS (plan and select as launches of their own, 1-D grids),
    # plain and min-p (the mass pointer 8 bytes into a workspace), indices,
    # and per-request tensors 4 bytes off alignment.
    big = 99
    lg, pr = inputs(big, vocab, 6, scale=1.0)
    kb, pb, mb, tb = params(big, vocab, 6)
    views = []
    for v in (pb, mb, tb):
        w = torch.empty(big + 1, device=DEV)[1:]
        w.copy_(v)
        views.append(w)
    idx = torch.arange(big, device=DEV).flip(0)
    for name in ("probs", "min_p", "logits_kp"):
        fn = SAMPLERS[name]
        cases.append(lambda fn=fn: fn(lg, pr, kb, *views, return_valid=True, indices=idx,
                                      seed=5, backend="triton"))
    # Without return_valid the flags go to the workspace (triton._sample).
    for name in ("top_p", "top_k", "probs"):
        fn = SAMPLERS[name]
        cases.append(lambda fn=fn: (fn(logits, probs, 50, 0.9, 0.1, 0.7, seed=11,
                                       backend="triton"), None))
    monkeypatch.setattr(launcher, "DIRECT", False)
    launcher._sites.clear()
    launcher._programs.clear()
    expected = [case() for case in cases]
    monkeypatch.setattr(launcher, "DIRECT", True)
    # The first round fills the sites, the second launches directly, the
    # third is ready (launcher.ready): its launches take addresses.
    for round in range(3):
        before = dict(launcher.counts)
        for case, want in zip(cases, expected):
            got = case()
            assert torch.equal(got[0], want[0])
            assert want[1] is None or torch.equal(got[1], want[1])
    assert launcher.counts["triton"] == before["triton"]
    assert launcher.counts["direct"] - before["direct"] >= 2 * len(cases)
    assert launcher.counts["ready"] - before["ready"] >= 2 * len(cases)
    import triton
    if triton.__version__.startswith(launcher.C_LAUNCH_RELEASES):   # the C function itself
        assert all(site.c is not None for site in launcher._sites.values())


def _captured(fn):
    """``fn()`` captured in a CUDA graph after warm-up calls on a side
    stream, as torch's CUDA-graph docs do: the graph, its output, and the
    launches of the captured call that were ready (launcher.ready: two
    warm-up calls make a key ready, so the capture passes the addresses of
    fresh workspaces)."""
    from tokensampler.triton import launcher
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
        fn()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    before = launcher.counts["ready"]
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out, launcher.counts["ready"] - before


def test_cuda_graph_capture_and_replay():
    vocab, batch = 32000, 16
    logits, _ = inputs(batch, vocab, 7)
    static_in = logits.clone()
    seed = torch.tensor([1], device=DEV)
    offset = torch.tensor([0], device=DEV)
    fn = lambda: ts.top_k_top_p_sampling_from_logits(static_in, 50, 0.9, seed=seed, offset=offset,
                                                      temperature=0.8, backend="triton")
    graph, static_out, ready = _captured(fn)
    from tokensampler.triton import launcher
    assert ready > 0 or not launcher.DIRECT   # (direct launches are off on ROCm)
    for step in range(3):
        new, _ = inputs(batch, vocab, 100 + step)
        static_in.copy_(new)
        seed.fill_(50 + step)
        offset.fill_(step)
        graph.replay()
        eager = ts.top_k_top_p_sampling_from_logits(new, 50, 0.9, seed=50 + step, offset=step,
                                                    temperature=0.8, backend="triton")
        assert torch.equal(static_out, eager)


@pytest.mark.parametrize("seed, offset", [(2**63 + 11, 5), (0, 0), (7, None)])
def test_int_seeds_in_a_captured_graph(seed, offset):
    """An int seed and offset are captured as constants: each replay draws
    what an eager call with those ints draws (the input changed in place).
    Until the thirteenth session an int became a tensor by torch.tensor, a
    copy from pageable memory that synchronises the stream, which a capture
    does not allow. A 0 and the default offset use the kept zero tensor,
    made fresh (in the graph's pool) when first needed during a capture."""
    vocab, batch = 32000, 16
    probs = inputs(batch, vocab, 8)[1]
    static_in = probs.clone()
    fn = lambda: ts.top_p_sampling_from_probs(static_in, 0.9, seed=seed, offset=offset,
                                              backend="triton")
    graph, static_out, _ = _captured(fn)
    for step in range(2):
        new = inputs(batch, vocab, 200 + step)[1]
        static_in.copy_(new)
        graph.replay()
        eager = ts.top_p_sampling_from_probs(new, 0.9, seed=seed, offset=offset,
                                             backend="reference")
        assert torch.equal(static_out, eager)


def test_no_call_synchronises_the_host(monkeypatch):
    """The kernel rules' "no host synchronisation", checked by torch itself:
    under sync debug mode "error" any synchronising torch call raises. The
    three launch paths (plain, top-p by rejection, top-k + top-p from
    logits) with per-output parameters and indices, and seeds as ints (0,
    small, past 2**63), a (1,) tensor, a generator and the default; two
    filters. Each form runs once first, to compile (few variants: compiling
    every sampler's took this test past 400 s on an H200). Without a
    timeout: one makes the call wait for its result, by design."""
    monkeypatch.delenv("TOKENSAMPLER_TIMEOUT_S", raising=False)
    monkeypatch.setattr(ts.watchdog, "_default", None)
    vocab, batch = 32000, 6
    logits, probs = inputs(batch, vocab, 11)
    idx = torch.tensor([5, 0, 0, 3], device=DEV)
    per_output = [v[:4] for v in params(batch, vocab, 11)]
    seeds = [dict(seed=5, offset=3), dict(seed=2**63 + 5, offset=2**40), dict(seed=0, offset=0),
             dict(seed=torch.tensor([9], device=DEV)),
             dict(generator=torch.Generator(device=DEV).manual_seed(1)), {}]
    calls = [lambda fn=SAMPLERS[name], kw=kw: fn(logits, probs, *per_output, indices=idx,
                                                 return_valid=True, backend="triton", **kw)
             for name in ("probs", "top_p", "logits_kp") for kw in seeds]
    calls += [lambda: ts.top_k_renorm_probs(probs, 50, backend="triton"),
              lambda: ts.softmax(logits, 0.7, backend="triton")]
    for call in calls:
        call()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for call in calls:
            call()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


def _chi2_pvalue(stat, dof):
    # Wilson-Hilferty: chi2/dof is close to normal after a cube root.
    z = ((stat / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))
    return 0.5 * math.erfc(z / math.sqrt(2))


def _draw_counts(call, vocab, n):
    """Counts of ``n`` draws of ``call(indices, seed)``, a million at a time
    with seeds 0, 1, ... (one slice of 10**7 needed more memory than an H100's
    80 GB for top-k's candidate workspace)."""
    counts = torch.zeros(vocab, dtype=torch.float64)
    step = min(n, 1_000_000)
    for i in range(0, n, step):
        idx = torch.zeros(min(step, n - i), dtype=torch.int64, device=DEV)
        counts += torch.bincount(call(idx, i // step).long(), minlength=vocab).double().cpu()
    return counts


def test_frequencies_ten_million_draws():
    """10**7 draws of one row: chi-square against the exact kept distribution
    (alpha = 1e-6), nothing outside the kept set, and the lightest kept tokens
    (probability 1e-6, 4e-6) drawn at their rate within 5 sigma. Plain,
    top-k, and top-p by rejection (one chunk, and 10**6 draws over three
    chunks, whose kept set is the reference's)."""
    n = 100_000 if SANITIZE else 10_000_000
    cases = []
    for vocab in (1000, 9000):
        w = torch.rand(vocab, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.5
        w[:10] = torch.tensor([1e-6, 4e-6] + [1e-4] * 8, dtype=torch.float64) * w[10:].sum()
        w[500:600] = 0.0
        probs = w.float().to(DEV).unsqueeze(0)
        p = 0.5 if vocab == 1000 else 0.7
        kept_p = ts.top_p_renorm_probs(probs, p, backend="reference")[0].cpu() > 0
        top_p = (f"top_p {vocab}", lambda i, s, probs=probs, p=p: ts.top_p_sampling_from_probs(
            probs, p, indices=i, seed=s, backend="triton"), kept_p, w, vocab, n // (vocab // 1000))
        if vocab == 1000:
            top_k = torch.zeros(vocab, dtype=torch.bool)
            top_k[torch.sort(-w, stable=True)[1][:300]] = True
            cases += [("plain", lambda i, s, probs=probs: ts.sampling_from_probs(
                          probs, indices=i, seed=123 + s, backend="triton"), w > 0, w, vocab, n),
                      ("top_k", lambda i, s, probs=probs: ts.top_k_sampling_from_probs(
                          probs, 300, indices=i, seed=9 + s, backend="triton"), top_k, w, vocab, n)]
        cases.append(top_p)
    for name, call, keep, w, vocab, draws in cases:
        counts = _draw_counts(call, vocab, draws)
        assert counts[~keep].sum() == 0, name
        q = torch.where(keep, w, 0.0)
        expected = q / q.sum() * draws
        pos = expected > 0
        stat = float(((counts[pos] - expected[pos]) ** 2 / expected[pos]).sum())
        assert _chi2_pvalue(stat, int(pos.sum()) - 1) > 1e-6, (name, stat)
        if name == "plain":
            for i in (0, 1):
                sd = math.sqrt(expected[i])
                assert abs(counts[i] - expected[i]) < 5 * sd + 1, (i, counts[i], expected[i])


def _child(mode, timeout=120):
    import os
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    torch.cuda.empty_cache()   # earlier tests' cached blocks would leave the child no memory
    start = time.monotonic()
    proc = subprocess.run([sys.executable, os.path.join(here, "hang_child.py"), mode],
                          capture_output=True, text=True, timeout=timeout)
    print(proc.stdout, proc.stderr[-2000:], f"child exit {proc.returncode} after "
          f"{time.monotonic() - start:.1f} s", sep="\n")
    return proc


@no_sanitizer
def test_watchdog_catches_a_kernel_that_never_finishes():
    """A kernel spinning on a flag: the watchdog raises after 2 s naming the
    synchronize stage; once released, the same process samples again."""
    proc = _child("release")
    assert proc.returncode == 0
    assert "TIMEOUT after 2." in proc.stdout
    assert "stage: synchronize" in proc.stdout
    assert "last finished: launch spin_until_set" in proc.stdout
    assert "RELEASED" in proc.stdout and "RECOVERED" in proc.stdout


@no_sanitizer
def test_a_process_can_exit_with_a_kernel_still_spinning():
    proc = _child("abandon")
    assert "TIMEOUT after 2." in proc.stdout and "EXITING" in proc.stdout
    assert proc.returncode == 0


@no_sanitizer
def test_doctor_passes_every_stage_on_the_gpu():
    from tokensampler import doctor

    torch.cuda.empty_cache()   # the stages' child processes need GPU memory
    results = doctor.diagnose("cuda", timeout=300, vocab=5000)
    print(doctor.render(results, "cuda"))
    assert all(r.status == "OK" for r in results)


def test_warmup_then_watchdog_on_the_gpu(monkeypatch):
    """After warm-up, calls at a batch in either launch form (fused per-row
    steps at 16 rows, launches of their own at 99) compile nothing and run
    inside a serving timeout. One op and one dtype: every op took 360 s
    alone on an H100, nearly all compiling (eleventh session)."""
    import triton
    from tokensampler.triton import warm_batches
    op = "top_k_top_p_sampling_from_logits"
    report = ts.warmup([32000], [torch.bfloat16], "cuda", ops=[op])
    assert [(r["batch"], r["per_row"]) for r in report] == [
        (b, p) for b in warm_batches() for p in (False, True)]
    compiled = []
    hook = triton.knobs.runtime.jit_cache_hook   # launcher's: names the compile stage
    monkeypatch.setattr(triton.knobs.runtime, "jit_cache_hook",
                        lambda *a, **kw: compiled.append(kw.get("fn")) or (hook and hook(*a, **kw)))
    for batch in (16, 99):
        logits, _ = inputs(batch, 32000, 3, torch.bfloat16)
        ids = ts.top_k_top_p_sampling_from_logits(logits, 50, 0.9, seed=4, timeout_s=30)
        assert torch.equal(ids, ts.top_k_top_p_sampling_from_logits(logits, 50, 0.9, seed=4))
    assert compiled == [], [getattr(fn, "name", fn) for fn in compiled]
