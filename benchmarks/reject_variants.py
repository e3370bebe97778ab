"""Per-launch GPU time of top-p's rejection path, and of top-k and joint
top-k + top-p, in the arrangements the launcher can take (torch.profiler;
benchmarks/RESULTS.md, seventh session). All give the same tokens
(checked here):

- ``tail`` / ``split``: round 0's draws in the stats launch's tail (up to
  ``FUSE_ROWS["draws"]`` outputs) or in ``draw_kernel``, a program per
  (output, draw);
- ``capped`` / ``uncapped``: with or without the register caps of
  ``_reg_cap`` (check launches; top-k and joint stats and compact).

The seventh session's first run of this script measured these forms as
monkeypatched variants before they were the launcher's
(results/v7-h100-reject-variants.txt).

    python benchmarks/reject_variants.py [B ...]
"""
import sys

import torch
import triton
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

import tokensampler as ts
import tokensampler.triton as tt


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
    print(f"  {name:<16} GPU {total:6.0f} us, eager {wall * 1e3:6.0f} us, same tokens {same}: "
          + ", ".join(f"{e.name[:12]} {e.device_time:.0f}" for e in kernels[:per_call]), flush=True)
    return got


def main():
    batches = [int(a) for a in sys.argv[1:]] or [16, 256, 1024]
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}")
    shipped_rows, shipped_cap = dict(tt.FUSE_ROWS), tt._reg_cap
    forms = [(f"{where},{cap}", where, cap) for where in ("tail", "split")
             for cap in ("capped", "uncapped")]
    seed = torch.tensor([1], device="cuda")
    off = torch.tensor([0], device="cuda")
    for B in batches:
        x = torch.softmax(torch.randn(B, 128256, device="cuda"), 1)
        ops = {f"top_p {p}": (lambda p=p: ts.top_p_sampling_from_probs(x, p, seed=seed, offset=off))
               for p in (0.9, 0.5)}
        ops["top_k 50"] = lambda: ts.top_k_sampling_from_probs(x, 50, seed=seed, offset=off)
        ops["joint"] = lambda: ts.top_k_top_p_sampling_from_probs(x, 50, 0.9, seed=seed,
                                                                  offset=off)
        for op, fn in ops.items():
            print(f"B={B} V=128256 {op}", flush=True)
            baseline = None
            for name, where, cap in forms:
                if where == "split" and not op.startswith("top_p"):
                    continue   # only top-p alone has round 0's draws
                tt.FUSE_ROWS = {**shipped_rows, "draws": (1 << 30) if where == "tail" else 0}
                tt._reg_cap = shipped_cap if cap == "capped" else (lambda *a: {})
                # Layouts are cached and read _reg_cap once: without this the
                # uncapped forms reused the capped layouts (since the tenth
                # session's cache; this script's results are the seventh and
                # eighth sessions').
                tt._layout.cache_clear()
                try:
                    got = measure(name, fn, baseline)
                    baseline = got if baseline is None else baseline
                finally:
                    tt.FUSE_ROWS, tt._reg_cap = shipped_rows, shipped_cap
                    tt._layout.cache_clear()


if __name__ == "__main__":
    main()
