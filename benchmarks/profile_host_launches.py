"""Host time of small eager calls (B=16, V=128256), with the launches and
without them (the Python around the launches), in one run. Per launch, the
median host microseconds of each kernel.

    python benchmarks/profile_host_launches.py
"""
import statistics
import time
from collections import defaultdict

import torch

import tokensampler as ts
import tokensampler.triton as tt

times = defaultdict(list)
_launch = tt.launch_with
mode = {"launch": True}


def timed(kernel, grid, args, kwargs):
    if not mode["launch"]:
        return
    t = time.perf_counter()
    _launch(kernel, grid, args, kwargs)
    times[kernel.fn.__name__].append((time.perf_counter() - t) * 1e6)


tt.launch_with = timed
x = torch.softmax(torch.randn(16, 128256, device="cuda"), 1)
logits = torch.randn(16, 128256, device="cuda")
seed = torch.tensor([1], device="cuda")
calls = (("top_p", lambda: ts.top_p_sampling_from_probs(x, 0.9, seed=seed)),
         ("top_k", lambda: ts.top_k_sampling_from_probs(x, 50, seed=seed)),
         ("joint_logits", lambda: ts.top_k_top_p_sampling_from_logits(logits, 50, 0.9, seed=seed)),
         ("plain", lambda: ts.sampling_from_probs(x, seed=seed)))
print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
for name, fn in calls:
    line = []
    for label, launch in (("with launches", True), ("python only", False)):
        mode["launch"] = launch
        for _ in range(5):
            fn()
        torch.cuda.synchronize()
        times.clear()
        t = time.perf_counter()
        for _ in range(100):
            fn()
        call = (time.perf_counter() - t) / 100 * 1e6
        torch.cuda.synchronize()
        line.append(f"{label} {call:.0f}")
        if launch:
            per = ", ".join(f"{k} {statistics.median(v):.0f} x{len(v) // 100}"
                            for k, v in times.items())
    print(f"{name}: host us per call: {'; '.join(line)}\n    per launch: {per}", flush=True)
