"""Host time of small eager sampling calls (B=1) and where it goes (cProfile).

    python benchmarks/profile_host.py
"""
import cProfile
import pstats
import time

import torch

import tokensampler as ts
x = torch.softmax(torch.randn(1, 128256, device="cuda"), 1)
seed = torch.tensor([1], device="cuda"); off = torch.tensor([0], device="cuda")
for name, fn in [("plain", lambda: ts.sampling_from_probs(x, seed=seed, offset=off)),
                 ("top_p", lambda: ts.top_p_sampling_from_probs(x, 0.9, seed=seed, offset=off)),
                 ("joint", lambda: ts.top_k_top_p_sampling_from_probs(x, 50, 0.9, seed=seed, offset=off))]:
    for _ in range(20): fn()
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(500): fn()
    host = (time.perf_counter() - t) / 500 * 1e6
    torch.cuda.synchronize(); tot = (time.perf_counter() - t) / 500 * 1e6
    print(f"{name}: host {host:.1f} us/call, with sync {tot:.1f} us/call")
pr = cProfile.Profile(); pr.enable()
for _ in range(500): ts.sampling_from_probs(x, seed=seed, offset=off)
pr.disable(); torch.cuda.synchronize()
pstats.Stats(pr).sort_stats("tottime").print_stats(14)
