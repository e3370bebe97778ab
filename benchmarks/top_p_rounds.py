"""Top-p alone on the bench's inputs: in which round each row was decided,
and the GPU time of each launch of one call (torch.profiler).

    python benchmarks/top_p_rounds.py [P:DIST:V:B ...]

State codes (chunked.first_draws): -1 invalid or greedy, -2 - k decided in
round k, -2 - ROUNDS by the final race. Default cells: those whose graph
replay in the seventeenth session's grid took 4x their neighbours.
"""
import collections
import os
import sys

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(__file__))
import tokensampler as ts  # noqa: E402
import tokensampler.triton as tt  # noqa: E402
from bench import make_logits  # noqa: E402

CELLS = sys.argv[1:] or ["0.5:normal1:32000:1", "0.5:normal5:32000:1", "0.5:normal1:32000:16",
                         "0.5:normal1:262144:1", "0.5:normal1:262144:16",
                         "0.5:normal5:262144:16", "0.9:normal1:128256:256",
                         "0.5:normal1:128256:1024"]
seed = torch.tensor([1], device="cuda")
off = torch.tensor([0], device="cuda")
for cell in CELLS:
    p, dist, V, B = cell.split(":")
    p, V, B = float(p), int(V), int(B)
    x = torch.softmax(make_logits(dist, B, V, None, 1)[0], dim=1)
    states = []
    tt.inspect = lambda ns: states.append(ns.state[:ns.n].clone())
    ts.top_p_sampling_from_probs(x, p, seed=seed, offset=off)
    tt.inspect = None
    torch.cuda.synchronize()
    count = collections.Counter(states[-1].tolist())
    for _ in range(3):
        ts.top_p_sampling_from_probs(x, p, seed=seed, offset=off)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            ts.top_p_sampling_from_probs(x, p, seed=seed, offset=off)
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    per_call = len(kernels) // 5
    times = collections.defaultdict(list)
    for i, e in enumerate(kernels[:per_call * 5]):
        times[(i % per_call, e.name[:14])].append(e.device_time)
    print(f"top-p {p} {dist} V={V} B={B}: states {dict(sorted(count.items()))}; launches µs "
          + ", ".join(f"{name} {min(t):.1f}" for (_, name), t in sorted(times.items())), flush=True)
