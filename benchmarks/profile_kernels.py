"""GPU time per Triton kernel of one sampling call (torch.profiler), B in {256, 1024}, V=128256.

    python benchmarks/profile_kernels.py [--split]

--split runs every per-row step as a launch of its own (as on ROCm), to time
a launch's streaming part apart from its tail: top-k's and joint's stats
without ``plan_row`` and compact without ``select_row`` (top-p alone then
takes the histogram path, so only top-k and joint are timed).
"""
import sys

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile
import tokensampler as ts
import tokensampler.triton as tt

split = "--split" in sys.argv[1:]
if split:
    tt._FUSE_OK = False
for B in (256, 1024):
    x = torch.softmax(torch.randn(B, 128256, device="cuda"), 1)
    seed = torch.tensor([1], device="cuda"); off = torch.tensor([0], device="cuda")
    lg = torch.log(x)
    calls = {"top_p_0.9": lambda: ts.top_p_sampling_from_probs(x, 0.9, seed=seed, offset=off),
             "top_p_0.9_logits": lambda: ts.top_k_top_p_sampling_from_logits(lg, None, 0.9, seed=seed,
                                                                              offset=off),
             "top_k_50": lambda: ts.top_k_sampling_from_probs(x, 50, seed=seed, offset=off),
             "joint": lambda: ts.top_k_top_p_sampling_from_probs(x, 50, 0.9, seed=seed, offset=off),
             "min_p": lambda: ts.min_p_sampling_from_probs(x, 0.1, seed=seed, offset=off),
             "plain": lambda: ts.sampling_from_probs(x, seed=seed, offset=off)}
    if split:
        calls = {name: calls[name] for name in ("top_k_50", "joint")}
    for name, fn in calls.items():
        for _ in range(3): fn()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5): fn()
            torch.cuda.synchronize()
        rows = [(e.key, e.device_time_total / 5, e.count // 5) for e in prof.key_averages()]
        rows.sort(key=lambda r: -r[1])
        total = sum(r[1] for r in rows)
        print(f"B={B} {name}: {total:.0f} us GPU; " + "; ".join(f"{k[:22]} x{c} {t:.0f}" for k, t, c in rows[:8]))
        # The launches of one call in order (the rounds of one kernel apart).
        kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
        per_call = len(kernels) // 5
        print("    " + ", ".join(f"{e.name[:14]} {e.device_time:.0f}" for e in kernels[:per_call]))
