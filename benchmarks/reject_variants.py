"""Where the GPU time of top-p's rejection path goes, and what three ways of
arranging it would save (seventh session; benchmarks/RESULTS.md).

The shipped form ends the stats launch with round 0's four draws, run by
each row's last program, and each check launch with the row's decision.
Those tails raise the registers of the whole streaming kernel. Variants,
all giving the same tokens (checked here):

- ``maxnreg=R``: the shipped launches capped at R registers a thread;
- ``split-row``: stats without a tail, then round 0's draws as a launch of
  their own, one program a row (``chunked.first_draws``);
- ``split-draw``: the same with one program per (row, draw).

Then top-k and joint top-k + top-p with their stats and compact launches
capped the same way.

    python benchmarks/reject_variants.py [B ...]
"""
import sys

import torch
import triton
import triton.language as tl
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

import tokensampler as ts
import tokensampler.triton as tt
from tokensampler.reference import DRAWS, ROUNDS
from tokensampler.triton import chunked, launcher
from tokensampler.triton.kernels import pick_chunk, stream_of

INT_MIN = -2147483648
INT_MAX = 2147483647


@triton.jit
def draws_row_kernel(x_ptr, stride_row, V, B, C, idx_ptr, pi_ptr, pf_ptr, draws_ptr, st_ptr,
                     seed_ptr, seed_step, off_ptr, off_step, out_ptr, valid_ptr, p_ptr, p_val,
                     t_ptr, t_val, HAS_INDICES: tl.constexpr, FROM_LOGITS: tl.constexpr,
                     P_ROW: tl.constexpr, T_ROW: tl.constexpr, STREAM_IS_POS: tl.constexpr,
                     CP2: tl.constexpr, CHUNK: tl.constexpr, DRAWS: tl.constexpr):
    chunked.first_draws(tl.program_id(0), x_ptr, stride_row, V, B, C, idx_ptr, pi_ptr, pf_ptr,
                        draws_ptr, st_ptr, seed_ptr, seed_step, off_ptr, off_step, out_ptr,
                        valid_ptr, p_ptr, p_val, t_ptr, t_val, HAS_INDICES, FROM_LOGITS, P_ROW,
                        T_ROW, STREAM_IS_POS, CP2, CHUNK, DRAWS)


@triton.jit
def draw_one_kernel(x_ptr, stride_row, V, B, C, idx_ptr, pi_ptr, pf_ptr, draws_ptr, st_ptr,
                    seed_ptr, seed_step, off_ptr, off_step, out_ptr, valid_ptr, p_ptr, p_val,
                    t_ptr, t_val, HAS_INDICES: tl.constexpr, FROM_LOGITS: tl.constexpr,
                    P_ROW: tl.constexpr, T_ROW: tl.constexpr, STREAM_IS_POS: tl.constexpr,
                    CP2: tl.constexpr, CHUNK: tl.constexpr, DRAWS: tl.constexpr):
    j = tl.program_id(0)
    q = tl.program_id(1)
    ok, row_off, _k, _p, _m, greedy, inv_t = chunked.request(
        j, idx_ptr, B, stride_row, p_ptr, 0, p_ptr, p_val, p_ptr, 0.0, t_ptr, t_val,
        HAS_INDICES, False, False, True, P_ROW, False, False, FROM_LOGITS, T_ROW)
    bad, kmax, kmin, amax, n_pos, n_max, vmax, ref, mul, total = chunked.combine_stats(
        pi_ptr, pf_ptr, j, C, inv_t, FROM_LOGITS, CP2)
    ok &= (bad == 0) & (n_pos > 0)
    if ok & ~greedy:
        cc = tl.arange(0, CP2)
        m = cc < C
        b = (j * C + cc).to(tl.int64)
        mass = tl.load(pf_ptr + b * 3 + 2, mask=m, other=0.0)
        log_mass = tl.where(mass > 0.0, tl.log(mass) + chunked.chunk_log_scale(
            pf_ptr, b, m, ref, inv_t, FROM_LOGITS), float("-inf"))
        seed = tl.load(seed_ptr + j * seed_step)
        offset = tl.load(off_ptr + j * off_step)
        stream = stream_of(j, STREAM_IS_POS)
        chunk = tl.zeros([], tl.int32)
        if C > 1:
            chunk = pick_chunk(log_mass, cc, m, seed, offset, stream, q)
        d = chunked.race_in_chunk(x_ptr, row_off, V, chunk, float("-inf"), -2147483648,
                                  2147483647, seed, offset, stream, ref, mul, q, FROM_LOGITS,
                                  CHUNK)
        tl.store(draws_ptr + j * DRAWS + q, d)
        if q == 0:
            tl.store(st_ptr + j, 0)
    else:
        if q == 0:
            tl.store(st_ptr + j, -1)
            tl.store(out_ptr + j, tl.where(ok, amax, 0).to(tl.int32))
            tl.store(valid_ptr + j, ok)


SHIPPED = tt._sample_top_p


def variant(mode, nreg=None):
    """A replacement for ``tt._sample_top_p`` (same arguments)."""
    extra = dict(maxnreg=nreg) if nreg else {}

    def run(call, x, out, valid, common, grid, seeds, p_ptr, p_val, p_row, t_ptr, t_val, fk,
            flags, chunk, cp2, warps):
        if mode == "fused":
            def capped(kernel, g, *a, **kw):
                if kernel.fn.__name__ in ("stats_kernel", "check_kernel"):
                    kw = {**kw, **extra}
                launcher.launch(kernel, g, *a, **kw)
            tt.launch = capped
            try:
                return SHIPPED(call, x, out, valid, common, grid, seeds, p_ptr, p_val, p_row,
                               t_ptr, t_val, fk, flags, chunk, cp2, warps)
            finally:
                tt.launch = launcher.launch
        n = call.num_outputs
        dev = x.device
        nc = n * grid[1]
        part_i = torch.empty(nc * 6, dtype=torch.int32, device=dev)
        part_f = torch.empty(nc * 3, dtype=torch.float32, device=dev)
        arrived = torch.zeros((1 + ROUNDS) * n, dtype=torch.int32, device=dev)
        draws = torch.empty(n * DRAWS, dtype=torch.int32, device=dev)
        state = torch.empty(n, dtype=torch.int32, device=dev)
        sums = torch.empty(nc * DRAWS, dtype=torch.float32, device=dev)
        stream = dict(STREAM_IS_POS=not call.seed_per_output)
        launcher.launch(chunked.stats_kernel, grid,
                        *common, t_ptr, t_val, part_i, part_f, draws, draws, p_ptr, p_val, p_ptr,
                        p_val, state, arrived, *seeds, out, valid, WITH_GM=False, CHUNK=chunk,
                        GROUP=tt.GROUP, PLAN=False, GP2=cp2, BRACKET=False, NS=tt.HIST_PASSES,
                        REJECT=True, DRAWS=DRAWS, num_warps=warps, **fk, **stream, **flags)
        kernel, g = ((draws_row_kernel, (n,)) if mode == "split-row"
                     else (draw_one_kernel, (n, DRAWS)))
        launcher.launch(kernel, g, *common, part_i, part_f, draws, state, *seeds, out, valid,
                        p_ptr, p_val, t_ptr, t_val, P_ROW=p_row, CP2=cp2, CHUNK=chunk,
                        DRAWS=DRAWS, num_warps=8, **stream, **flags)
        for k in range(ROUNDS):
            launcher.launch(chunked.check_kernel, grid,
                            *common, part_i, part_f, draws, state, sums, arrived[(1 + k) * n:], k,
                            *seeds, out, valid, p_ptr, p_val, t_ptr, t_val, P_ROW=p_row, CP2=cp2,
                            CHUNK=chunk, BLOCK=tt._block(x.shape[1]), DRAWS=DRAWS,
                            ROUNDS=ROUNDS, num_warps=warps, **extra, **stream, **flags)
        return out, valid
    return run


def measure(name, fn, baseline):
    for _ in range(3):
        got = fn()
    torch.cuda.synchronize()
    same = baseline is None or torch.equal(got, baseline)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            fn()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    per_call = len(kernels) // 5
    total = sum(e.device_time for e in kernels) / 5
    wall = triton.testing.do_bench(fn, warmup=25, rep=200)
    print(f"  {name:<14} GPU {total:6.0f} us, eager {wall * 1e3:6.0f} us, same tokens {same}: "
          + ", ".join(f"{e.name[:12]} {e.device_time:.0f}" for e in kernels[:per_call]), flush=True)
    return got


def main():
    batches = [int(a) for a in sys.argv[1:]] or [16, 256, 1024]
    on_gpu = torch.cuda.is_available()
    dev = "cuda" if on_gpu else "cpu"
    print(torch.cuda.get_device_name() if on_gpu else "cpu (interpreter)")
    modes = [("shipped", "fused", None), ("split-row", "split-row", None),
             ("split-draw", "split-draw", None)]
    if on_gpu:
        modes += [(f"maxnreg={r}", "fused", r) for r in (64, 80, 96)]
        modes += [(f"split-draw,{r}", "split-draw", r) for r in (64, 80)]
    for vocab in (128256,) if on_gpu else (9000,):
        for B in batches:
            x = torch.softmax(torch.randn(B, vocab, device=dev), 1)
            for p in (0.9, 0.5):
                print(f"B={B} V={vocab} top_p={p}", flush=True)
                seed = torch.tensor([1], device=dev)
                off = torch.tensor([0], device=dev)
                baseline = None
                for name, mode, nreg in modes:
                    tt._sample_top_p = variant(mode, nreg)
                    fn = lambda: ts.top_p_sampling_from_probs(x, p, seed=seed, offset=off,  # noqa: E731
                                                          backend="triton")
                    try:
                        if on_gpu:
                            got = measure(name, fn, baseline)
                        else:
                            got = fn()
                            print(f"  {name}: same tokens {baseline is None or torch.equal(got, baseline)}")
                    except Exception as e:   # a variant that does not compile is a result too
                        print(f"  {name}: {type(e).__name__}: {str(e)[:200]}", flush=True)
                        continue
                    finally:
                        tt._sample_top_p = SHIPPED
                    baseline = got if baseline is None else baseline


def capped_filtered(batches):
    """Top-k and joint top-k + top-p (probs): the stats launch ends with
    ``plan_row`` (32 bisection steps over 8192 group maxima), which also
    raises the registers of the whole kernel; the same caps."""
    for B in batches:
        x = torch.softmax(torch.randn(B, 128256, device="cuda"), 1)
        seed = torch.tensor([1], device="cuda")
        off = torch.tensor([0], device="cuda")
        for op, fn in (("top_k_50", lambda: ts.top_k_sampling_from_probs(x, 50, seed=seed,
                                                                          offset=off)),
                       ("joint", lambda: ts.top_k_top_p_sampling_from_probs(x, 50, 0.9, seed=seed,
                                                                             offset=off))):
            print(f"B={B} V=128256 {op}", flush=True)
            baseline = None
            for nreg in (None, 80, 96, 128):
                def capped(kernel, g, *a, **kw):
                    if nreg and kernel.fn.__name__ in ("stats_kernel", "compact_kernel"):
                        kw = {**kw, "maxnreg": nreg}
                    launcher.launch(kernel, g, *a, **kw)
                tt.launch = capped
                try:
                    got = measure(f"maxnreg={nreg}", fn, baseline)
                    baseline = got if baseline is None else baseline
                except Exception as e:
                    print(f"  maxnreg={nreg}: {type(e).__name__}: {str(e)[:200]}", flush=True)
                finally:
                    tt.launch = launcher.launch


if __name__ == "__main__":
    main()
    if torch.cuda.is_available():
        capped_filtered([int(a) for a in sys.argv[1:]] or [256])
