"""GPU time of each kernel launch of one top-p call, in launch order (torch.profiler),
for several histogram-bin counts (``tokensampler.triton.HIST_BINS``), through
the histogram bracket (ROCm's top-p path, selected here everywhere with
``triton._FUSE_OK``; elsewhere top-p alone draws by rejection).

    python benchmarks/profile_launches.py [--batch 256] [--vocab 128256] [--bins 256 512]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch.profiler import ProfilerActivity, profile

import tokensampler as ts
import tokensampler.triton as tt


def launches(fn, reps=5):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    runs = []
    for _ in range(reps):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        ks = [(e.name, e.device_time_total) for e in prof.events()
              if e.name.endswith("_kernel") and e.device_time_total > 0]
        runs.append(ks)
    names = [n for n, _ in runs[0]]
    return [(n, statistics.median(r[i][1] for r in runs)) for i, n in enumerate(names)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--bins", type=int, nargs="*", default=[128, 256, 512])
    ap.add_argument("--p", type=float, nargs="*", default=[0.9])
    ap.add_argument("--scale", type=float, nargs="*", default=[1.0, 5.0])
    args = ap.parse_args()
    seen = []
    tt.inspect = seen.append
    tt._FUSE_OK = False
    seed = torch.tensor([1], device="cuda")
    for scale in args.scale:
        logits = torch.randn(args.batch, args.vocab, device="cuda") * scale
        probs = torch.softmax(logits, 1)
        for p in args.p:
            for nb in args.bins:
                tt.HIST_BINS = nb
                tt._layout.cache_clear()   # layouts read HIST_BINS once
                for src, fn in (("probs", lambda: ts.top_p_sampling_from_probs(probs, p, seed=seed)),
                                ("logits", lambda: ts.top_k_top_p_sampling_from_logits(
                                    logits, None, p, seed=seed))):
                    ks = launches(fn)
                    ws = seen[-1]
                    used = ws.passes.float()
                    over = (ws.count > ws.cap).float().mean().item()
                    total = sum(t for _, t in ks)
                    detail = " ".join(f"{n.replace('_kernel', '')}={t:.0f}" for n, t in ks)
                    print(f"N(0,{scale:g}) p={p} {src:6} bins={nb:4d}: "
                          f"{total:6.0f} us, passes {used.mean().item():.2f}, "
                          f"overflow {over:.1%} | {detail}", flush=True)


if __name__ == "__main__":
    main()
