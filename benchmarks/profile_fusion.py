"""Which per-row steps of top-p should run at the end of the launch before
them (fused) and which as launches of their own, by batch size.

For top-p 0.9 on N(0, 1) probs at V=128256 and each batch size, every
configuration of ``tokensampler.triton.FUSE_ROWS`` (plan, narrow, select:
fused or separate) is timed end to end (median of CUDA events,
``triton.testing.do_bench``), with the GPU time of each kernel from
torch.profiler. All in one run on one card, so the numbers compare.

Historical (fifth session): since the seventh, top-p alone on CUDA draws by
rejection and these steps serve only the histogram-bracket path (ROCm), so
on CUDA every configuration now times the same code.

    python benchmarks/profile_fusion.py [--batch 16 64 256]
"""
import argparse
import itertools
from collections import defaultdict

import torch
import triton
from torch.profiler import ProfilerActivity, profile

import tokensampler as ts
import tokensampler.triton as tt

STEPS = ("plan", "narrow", "select")


def kernel_times(fn, reps=5):
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    per = defaultdict(float)
    for e in prof.key_averages():
        if e.device_time_total > 0:
            per[e.key.split("(")[0][:16]] += e.device_time_total / reps
    return per


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="*", default=[16, 64, 256])
    ap.add_argument("--vocab", type=int, default=128256)
    args = ap.parse_args()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}")
    saved = dict(tt.FUSE_ROWS)
    for batch in args.batch:
        g = torch.Generator(device="cuda").manual_seed(batch)
        x = torch.softmax(torch.randn(batch, args.vocab, device="cuda", generator=g), 1)
        seed = torch.tensor([1], device="cuda")
        fn = lambda: ts.top_p_sampling_from_probs(x, 0.9, seed=seed, offset=seed)  # noqa: E731
        for fused in itertools.product((False, True), repeat=3):
            tt.FUSE_ROWS = {**saved, **{s: (1 << 30) if f else 0 for s, f in zip(STEPS, fused)}}
            us = triton.testing.do_bench(fn, warmup=25, rep=200) * 1e3
            per = kernel_times(fn)
            label = "+".join(s for s, f in zip(STEPS, fused) if f) or "separate"
            parts = ", ".join(f"{k} {v:.0f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]))
            print(f"B={batch:5d} {label:20s} {us:8.1f} us | GPU {sum(per.values()):7.1f}: {parts}",
                  flush=True)
    tt.FUSE_ROWS = saved


if __name__ == "__main__":
    main()
