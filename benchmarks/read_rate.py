"""How fast can a Triton program grid read a (B, V) float32 batch, and how
close is the stats pass? (benchmarks/RESULTS.md, seventh session: both
passes of top-p's rejection path run at ~1.6 TB/s, and at that rate no
launch arrangement beats FlashInfer.)

One run, one card, median of CUDA events (``triton.testing.do_bench``):

- torch reads: ``x.sum(1)``, ``x.amax(1)``;
- ``read_kernel``: programs of ``PER_PROG`` chunks of CHUNK tokens (a loop, so
  the compiler may keep the next chunk's loads in flight), one sum each,
  over num_warps and PER_PROG;
- the stats launch of plain sampling (the first pass of every sampler),
  from torch.profiler, at 4, 8 and 16 warps;
- ``work_kernel``: one chunk a program (4 warps) with NOPS fused
  multiply-adds a token and NRED block reductions, to split the stats
  pass's cost between per-token arithmetic and reductions (eighth session:
  the first run found it at half the read rate, and reading several chunks
  a program, the next one's load in flight, made it slower).

    python benchmarks/read_rate.py [B ...]
"""
import sys

import torch
import triton
import triton.language as tl
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

import tokensampler as ts
import tokensampler.triton as tt
from tokensampler.triton import launcher

V = 128256
CHUNK = 4096


@triton.jit
def read_kernel(x_ptr, out_ptr, V, CHUNK: tl.constexpr, PER_PROG: tl.constexpr):
    """Program (j, g): chunks g * PER_PROG .. of row j, one sum each (``out``
    has a slot for every chunk of the padded grid)."""
    j = tl.program_id(0)
    g = tl.program_id(1)
    for i in tl.range(0, PER_PROG):
        c = g * PER_PROG + i
        cols = c * CHUNK + tl.arange(0, CHUNK)
        v = tl.load(x_ptr + j.to(tl.int64) * V + cols, mask=cols < V, other=0.0)
        tl.store(out_ptr + j * tl.num_programs(1) * PER_PROG + c, tl.sum(v))


@triton.jit
def work_kernel(x_ptr, out_ptr, V, a, b, CHUNK: tl.constexpr, NOPS: tl.constexpr,
                NRED: tl.constexpr):
    """Chunk (j, c): NOPS dependent multiply-adds a token (a, b are runtime
    values, so nothing folds), then NRED reductions of distinct values,
    alternating sum and max."""
    j = tl.program_id(0)
    c = tl.program_id(1)
    cols = c * CHUNK + tl.arange(0, CHUNK)
    v = tl.load(x_ptr + j.to(tl.int64) * V + cols, mask=cols < V, other=0.0)
    for _ in tl.static_range(NOPS):
        v = v * a + b
    acc = tl.zeros([], tl.float32)
    for r in tl.static_range(NRED):
        if r % 2 == 0:
            acc += tl.sum(v * (a + r))
        else:
            acc += tl.max(v + (b + r))
    tl.store(out_ptr + j * tl.num_programs(1) + c, acc)


def bench(fn):
    return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median") * 1e3


def stats_time(x, warps):
    """GPU µs of the stats launch in plain sampling, with ``num_warps`` forced."""
    def forced(kernel, grid, a, kw):
        if kernel.fn.__name__ == "stats_kernel":
            # Uncapped: a register cap sized for other warps would spill.
            kw = {**{k: v for k, v in kw.items() if k != "maxnreg"}, "num_warps": warps}
        launcher.launch_with(kernel, grid, a, kw)
    tt.launch_with = forced
    # Through Triton's path: the call's key does not include the forced
    # warps, so a direct launch would reuse the first variant (and a ready
    # call refuses keywords other than its key's).
    direct, launcher.DIRECT = launcher.DIRECT, False
    try:
        fn = lambda: ts.sampling_from_probs(x, seed=1)  # noqa: E731
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(10):
                fn()
            torch.cuda.synchronize()
    finally:
        tt.launch_with = launcher.launch_with
        launcher.DIRECT = direct
    times = [e.device_time for e in prof.events()
             if e.device_type == DeviceType.CUDA and "stats_kernel" in e.name]
    return sorted(times)[len(times) // 2]


def main():
    batches = [int(a) for a in sys.argv[1:]] or [256, 1024]
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}")
    C = triton.cdiv(V, CHUNK)
    for B in batches:
        x = torch.softmax(torch.randn(B, V, device="cuda"), 1)
        gb = x.numel() * 4 / 1e9
        out = torch.empty(B * C * 8, device="cuda")
        rows = [("torch sum", bench(lambda: x.sum(1))), ("torch amax", bench(lambda: x.amax(1)))]
        # (The first run swept PER_PROG 1-8 and 4-16 warps: all within 2%,
        # results/v8-h200-read-rate.txt.)
        rows.append(("read_kernel per_prog=1 warps=4", bench(
            lambda: read_kernel[(B, C)](x, out, V, CHUNK=CHUNK, PER_PROG=1, num_warps=4))))
        for nops, nred in ((0, 1), (0, 3), (0, 6), (0, 9), (8, 1), (16, 1), (32, 1), (64, 1),
                           (32, 9)):
            rows.append((f"work_kernel nops={nops} nred={nred}", bench(
                lambda: work_kernel[(B, C)](x, out, V, 1.0001, 0.5, CHUNK=CHUNK, NOPS=nops,
                                            NRED=nred, num_warps=4))))
        rows.append(("stats_kernel (plain) warps=4", stats_time(x, 4)))
        print(f"B={B} V={V} float32, {gb * 1e3:.0f} MB")
        for name, us in rows:
            print(f"  {name:<40} {us:7.1f} us  {gb / us * 1e3:5.2f} TB/s", flush=True)


if __name__ == "__main__":
    main()
