"""One call of one op on the bench's inputs, with only that call inside
cudaProfilerStart/Stop, for Nsight Compute's hardware counters:

    ncu --clock-control none --profile-from-start off --set full \\
        python benchmarks/ncu_cells.py OP:DIST:V:B [--real FILE]

OP is one of ``top_p0.9``, ``top_p0.5``, ``joint`` (top-k 50 + top-p 0.9
from probs), ``top_k50``, ``min_p``, ``plain`` or ``read`` (one torch sum
over the same tensor: the read rate the card gives a row-wise reduction, in
the same report). DIST is bench.py's (normal1, normal5, or real rows of
``--real``). The call runs three times first, so that compilation and the
layout cache stay outside the profiled range; ``--clock-control none``
leaves the clocks as the timed runs see them.

``--times`` (without ncu: the profiler's own hooks would clash with it)
prints each launch's GPU µs by torch.profiler instead.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import tokensampler as ts  # noqa: E402
from bench import make_logits  # noqa: E402
from top_p_rounds import launch_times  # noqa: E402


def op_fn(op, x, seed, off):
    """The call a cell profiles, as a closure over its inputs."""
    kw = dict(seed=seed, offset=off)
    calls = {
        "top_p0.9": lambda: ts.top_p_sampling_from_probs(x, 0.9, **kw),
        "top_p0.5": lambda: ts.top_p_sampling_from_probs(x, 0.5, **kw),
        "joint": lambda: ts.top_k_top_p_sampling_from_probs(x, 50, 0.9, **kw),
        "top_k50": lambda: ts.top_k_sampling_from_probs(x, 50, **kw),
        "min_p": lambda: ts.min_p_sampling_from_probs(x, 0.1, **kw),
        "plain": lambda: ts.sampling_from_probs(x, **kw),
        "read": lambda: x.sum(dim=1),
    }
    if op not in calls:
        raise SystemExit(f"OP: expected one of {', '.join(calls)}, got {op!r}")
    return calls[op]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cell", help="OP:DIST:V:B, e.g. top_p0.9:normal1:128256:256")
    ap.add_argument("--real", default=None)
    ap.add_argument("--times", action="store_true")
    args = ap.parse_args()
    op, dist, V, B = args.cell.split(":")
    real = torch.load(args.real).cuda() if args.real else None
    x = torch.softmax(make_logits(dist, int(B), int(V), real, 1)[0], dim=1)
    fn = op_fn(op, x, torch.tensor([1], device="cuda"), torch.tensor([0], device="cuda"))
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    fn()
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()
    if args.times:
        times = launch_times(fn)
        print(f"{args.cell} V={x.shape[1]}: " + ", ".join(f"{n} {t:.1f}" for n, t in times))


if __name__ == "__main__":
    main()
