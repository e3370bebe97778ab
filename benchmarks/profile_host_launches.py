"""Host time of each kernel launch of a small eager top-p and top-k call (B=16).

    python benchmarks/profile_host_launches.py
"""
import statistics
import time
from collections import defaultdict

import torch

import tokensampler as ts
import tokensampler.triton as tt

times = defaultdict(list)
_launch = tt.launch


def timed(kernel, grid, *args, **kwargs):
    t = time.perf_counter()
    _launch(kernel, grid, *args, **kwargs)
    times[kernel.fn.__name__].append((time.perf_counter() - t) * 1e6)


tt.launch = timed
x = torch.softmax(torch.randn(16, 128256, device="cuda"), 1)
seed = torch.tensor([1], device="cuda")
for name, fn in (("top_p", lambda: ts.top_p_sampling_from_probs(x, 0.9, seed=seed)),
                 ("top_k", lambda: ts.top_k_sampling_from_probs(x, 50, seed=seed))):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times.clear()
    t = time.perf_counter()
    for _ in range(50):
        fn()
    call = (time.perf_counter() - t) / 50 * 1e6
    torch.cuda.synchronize()
    per = ", ".join(f"{k} {statistics.median(v):.0f} x{len(v) // 50}" for k, v in times.items())
    print(f"{name}: {call:.0f} us host per call; per launch: {per}", flush=True)
