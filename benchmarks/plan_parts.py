"""Where split top-k's ``plan_kernel`` spends its time, and what would cut it.

The tenth session measured plan_kernel at 43 µs (B=256) and 139 µs (B=1024)
on an H200 for top-k 50 at V=128256: a third of the call's GPU time, for a
step that reads 32 KB a row. Compiled for sm_90 it is 6163 instructions a
thread (8 warps, 114 registers: two programs an SM), 4200 of them the 32
bisection steps over 8192 lanes, ~1600 the group list (a scan of 8192 lanes).

This times, with CUDA-graph replay (no host time), on the workspaces of a
real call (stats_kernel's partials and group maxima):

* ``shipped``: ``chunked.plan_kernel`` as launched (and with other warps);
* a copy of ``plan_row``'s top-k path with parts switched off (``combine``
  only, ``+load``, ``+bisect``, ``+list``) and with other numbers of
  bisection steps, to attribute the time and to price the fixes; the copy
  is checked against plan_kernel's bound and list first.

    python benchmarks/plan_parts.py [--batch 256 1024]
"""
import argparse

import torch
import triton
import triton.language as tl

import tokensampler as ts
import tokensampler.triton as tt
from tokensampler.triton import chunked
from tokensampler.triton.chunked import BISECT_STEPS, INT_MIN, _bisect, combine_stats


@triton.jit
def parts_kernel(pi_ptr, pf_ptr, gm_ptr, plan_ptr, gl_ptr, C, k, CP2: tl.constexpr,
                 GP2: tl.constexpr, G_PER_CHUNK: tl.constexpr, LOAD: tl.constexpr,
                 STEPS: tl.constexpr, LIST: tl.constexpr):
    j = tl.program_id(0)
    bad, kmax, kmin, amax, n_pos, n_max, vmax, ref, mul, total = combine_stats(
        pi_ptr, pf_ptr, j, C, 1.0, False, CP2)
    bound = kmin.to(tl.int64)
    n_groups = tl.zeros([], tl.int32)
    if LOAD:
        g = tl.arange(0, GP2)
        gk = tl.load(gm_ptr + j.to(tl.int64) * C * G_PER_CHUNK + g, mask=g < C * G_PER_CHUNK,
                     other=INT_MIN)
        if STEPS > 0:
            bound = _bisect(gk, gk.to(tl.float32), kmin, kmax, k, 0.0, False, STEPS)
        if LIST:
            need = gk >= bound.to(tl.int32)
            ranked = need.to(tl.int32)
            slot = tl.cumsum(ranked, axis=0) - ranked
            tl.store(gl_ptr + j.to(tl.int64) * C * G_PER_CHUNK + slot, g, mask=need)
            n_groups = tl.sum(ranked)
        else:
            n_groups = tl.max(gk)
    tl.store(plan_ptr + j * 4, bound.to(tl.int32))
    tl.store(plan_ptr + j * 4 + 2, n_groups)
    tl.store(plan_ptr + j * 4 + 3, bad + n_pos + amax + n_max)   # kept live


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--smoke", action="store_true",
                    help="each variant once on the CPU (TRITON_INTERPRET=1): that it runs")
    args = ap.parse_args()
    dev = "cpu" if args.smoke else "cuda"
    tt._FUSE_OK = False   # plan as a launch of its own at every batch
    for B in args.batch:
        x = torch.softmax(torch.randn(B, 128256, device=dev), 1)
        seed = torch.tensor([1], device=dev)
        launches = []
        real = tt.launch_with

        def spy(kernel, grid, a, kw):
            if kernel is chunked.plan_kernel:
                launches.append((grid, a, kw))
            return real(kernel, grid, a, kw)

        tt.launch_with = spy
        seen = []
        tt.inspect = seen.append
        ts.top_k_sampling_from_probs(x, 50, seed=seed, offset=torch.tensor([0], device=dev),
                                      backend="triton")
        tt.launch_with, tt.inspect = real, None
        (grid, a, kw), = launches
        w = seen[0]
        C, gpc, gp2 = a[5], kw["G_PER_CHUNK"], kw["GP2"]
        plan, gl = torch.empty_like(w.plan), torch.empty_like(w.gl)

        def time(fn):
            fn()
            if args.smoke:
                return float("nan")
            torch.cuda.synchronize()
            return 1000 * triton.testing.do_bench_cudagraph(fn, rep=100)   # ms -> µs

        def shipped(**over):
            kw2 = dict(kw, **over)
            return lambda: chunked.plan_kernel[grid](*a, **kw2)

        rows = [("shipped (8 warps)", shipped())]
        for warps in (4, 16):
            rows.append((f"shipped, {warps} warps", shipped(num_warps=warps)))
        # Fewer registers, more programs an SM (8 warps: 114 -> 3 or 4 programs).
        for regs in (80, 64):
            rows.append((f"shipped, maxnreg {regs}", shipped(maxnreg=regs)))
        rows.append(("shipped, 16 warps, maxnreg 64", shipped(num_warps=16, maxnreg=64)))
        rows.append(("shipped, size-class lanes 8192 (before)", shipped(GP2=8192)))

        def part(load, steps, lst, warps=8, lanes=gp2, regs=None):
            more = {} if regs is None else dict(maxnreg=regs)
            return lambda: parts_kernel[grid](w.part_i, w.part_f, w.gm, plan, gl, C, 50,
                                              CP2=kw["CP2"], GP2=lanes, G_PER_CHUNK=gpc,
                                              LOAD=load, STEPS=steps, LIST=lst,
                                              num_warps=warps, **more)
        rows += [("combine only", part(False, 0, False)),
                 ("+ load", part(True, 0, False)),
                 ("+ list (no bisect)", part(True, 0, True)),
                 ("+ bisect 32 (no list)", part(True, 32, False)),
                 ("bisect 32 + list", part(True, 32, True)),
                 ("bisect 20 + list", part(True, 20, True)),
                 ("bisect 16 + list", part(True, 16, True)),
                 ("bisect 20 + list, maxnreg 64", part(True, 20, True, regs=64)),
                 ("bisect 32 + list, 16 warps", part(True, 32, True, 16))]
        # The copy computes what plan_kernel does; fewer steps list more groups.
        exact = w.plan.view(-1, 4)[:, :3].clone()
        part(True, BISECT_STEPS.value, True)()
        assert torch.equal(plan.view(-1, 4)[:, [0, 2]], exact[:, [0, 2]]), "parts_kernel differs"
        for steps in (32, 20, 16, 12):
            part(True, steps, True)()
            print(f"  {steps} steps: {plan.view(-1, 4)[:, 2].float().mean():.1f} groups listed "
                  f"a row", flush=True)
        print(f"B={B} V=128256 top-k 50, plan_kernel parts, µs (CUDA-graph replay, "
              f"{torch.cuda.get_device_name() if dev == 'cuda' else dev}):", flush=True)
        for name, fn in rows:
            print(f"  {name:<34} {time(fn):7.1f}", flush=True)


if __name__ == "__main__":
    main()
