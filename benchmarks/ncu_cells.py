"""One call of one op on the bench's inputs, with only that call inside
cudaProfilerStart/Stop, for Nsight Compute's hardware counters:

    ncu --clock-control none --profile-from-start off --set full \\
        python benchmarks/ncu_cells.py OP:DIST:V:B [--real FILE]

OP is one of bench.py's ops (``top_p_0.9``, ``joint_probs``, ``plain``,
...; called as bench.py calls them) or ``read`` (one torch sum over the same
tensor: the read rate the card gives a row-wise reduction, in the same
report). DIST is bench.py's (normal1, normal5, or real rows of ``--real``). The call runs three times first, so that compilation and the
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
from bench import OPS, make_logits, op_spec, provider_fns  # noqa: E402
from top_p_rounds import launch_times  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cell", help="OP:DIST:V:B, e.g. top_p_0.9:normal1:128256:256")
    ap.add_argument("--real", default=None)
    ap.add_argument("--times", action="store_true")
    args = ap.parse_args()
    op, dist, V, B = args.cell.split(":")
    if op != "read" and op not in OPS:
        raise SystemExit(f"OP: expected read or one of {', '.join(OPS)}, got {op!r}")
    real = torch.load(args.real).cuda() if args.real else None
    x = make_logits(dist, int(B), int(V), real, 1)[0]
    if op == "read" or not op_spec(op)[0]:
        x = torch.softmax(x, dim=1)
    if op == "read":
        def fn():
            return x.sum(dim=1)
    else:
        call = provider_fns(op, None)["tokensampler"]
        seed, off = torch.tensor([1], device="cuda"), torch.tensor([0], device="cuda")

        def fn():
            return call(x, seed, off)
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
