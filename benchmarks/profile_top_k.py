"""Where top-k's GPU time goes, per kernel, with every per-row step a launch
of its own (plan, select), for top-k 50 and 1000 at several B and V, on
N(0,1) logits as in bench.py's grid; and each row's candidate count (what
select_row sorts up to 256, and searches above).

    python benchmarks/profile_top_k.py [--batch 1 64 1024] [--vocab 32000 128256]
"""
import argparse

import torch
from torch.profiler import ProfilerActivity, profile

import tokensampler as ts
import tokensampler.triton as tt

ap = argparse.ArgumentParser()
ap.add_argument("--batch", type=int, nargs="*", default=[1, 64, 1024])
ap.add_argument("--vocab", type=int, nargs="*", default=[32000, 128256])
ap.add_argument("--k", type=int, nargs="*", default=[50, 1000])
args = ap.parse_args()
tt._FUSE_OK = False   # plan and select as launches of their own
print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
for V in args.vocab:
    for B in args.batch:
        g = torch.Generator(device="cuda").manual_seed(B * 7 + V)
        x = torch.softmax(torch.randn(B, V, device="cuda", generator=g), 1)
        seed = torch.tensor([1], device="cuda")
        for k in args.k:
            fn = lambda: ts.top_k_sampling_from_probs(x, k, seed=seed)
            counts = []
            tt.inspect = lambda s: counts.append(s.count.clone())
            fn()
            tt.inspect = None
            c = counts[0].float()
            for _ in range(3):
                fn()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(5):
                    fn()
                torch.cuda.synchronize()
            rows = [(e.key, e.device_time_total / 5) for e in prof.key_averages()
                    if e.key.endswith("_kernel")]
            rows.sort(key=lambda r: -r[1])
            total = sum(t for _, t in rows)
            print(f"V={V} B={B} k={k}: {total:.0f} us GPU; "
                  + "; ".join(f"{name} {t:.1f}" for name, t in rows)
                  + f" | candidates mean {c.mean():.0f} max {c.max():.0f}", flush=True)
