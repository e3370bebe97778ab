"""Top-p alone on the bench's inputs: in which round each row was decided,
and the GPU time of each launch of one call (torch.profiler).

    python benchmarks/top_p_rounds.py [P:DIST:V:B ...] [--real FILE]

DIST is bench.py's: normal1, normal5, or real (rows of ``--real``, a
(rows, V) tensor saved by capture_logits.py; V is then the file's). State
codes (chunked.first_draws): -1 invalid or greedy, -2 - k decided in round
k, -2 - ROUNDS by the final race. Default cells: those whose graph replay in
the seventeenth session's grid took 4x their neighbours, and their controls.
"""
import argparse
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

DEFAULT = ["0.5:normal1:32000:1", "0.5:normal5:32000:1", "0.5:normal1:32000:16",
           "0.5:normal1:262144:1", "0.5:normal1:262144:16", "0.5:normal5:262144:16",
           "0.9:normal1:128256:256", "0.5:normal1:128256:1024"]


def launch_times(fn, calls=5):
    """GPU µs of each launch of one call (the least over ``calls`` calls),
    as (name, µs) in launch order."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    per_call = len(kernels) // calls
    times = collections.defaultdict(list)
    for i, e in enumerate(kernels[:per_call * calls]):
        times[(i % per_call, e.name[:14])].append(e.device_time)
    return [(name, min(t)) for (_, name), t in sorted(times.items())]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cells", nargs="*", default=DEFAULT)
    ap.add_argument("--real", default=None)
    args = ap.parse_args()
    real = torch.load(args.real).cuda() if args.real else None
    seed = torch.tensor([1], device="cuda")
    off = torch.tensor([0], device="cuda")
    for cell in args.cells:
        p, dist, V, B = cell.split(":")
        p, V, B = float(p), int(V), int(B)
        x = torch.softmax(make_logits(dist, B, V, real, 1)[0], dim=1)
        states = []
        tt.inspect = lambda ns: states.append(ns.state[:ns.n].clone())
        ts.top_p_sampling_from_probs(x, p, seed=seed, offset=off)
        tt.inspect = None
        torch.cuda.synchronize()
        count = collections.Counter(states[-1].tolist())
        times = launch_times(lambda: ts.top_p_sampling_from_probs(x, p, seed=seed, offset=off))
        print(f"top-p {p} {dist} V={x.shape[1]} B={B}: states {dict(sorted(count.items()))}; "
              "launches µs " + ", ".join(f"{name} {t:.1f}" for name, t in times), flush=True)


if __name__ == "__main__":
    main()
