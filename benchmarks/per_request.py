"""Per-request parameters, as an engine's batch has them: top-k + top-p
with top-k off (0) in some rows and on in others, against FlashInfer's
per-request tensors, in one run. Rows whose top-k is off are top-p alone
and draw by rejection (docs/semantics.md section 5); how they are decided
is what this times (until the eighteenth session they took the
single-program path: 4.4 ms at B=16, V=128256 on an H200).

    python benchmarks/per_request.py [--batch 16 256] [--vocab 128256] [--off 0 0.5 1]
                                     [--ops joint top_k]

Median µs by CUDA events (do_bench, as bench.py), and the GPU µs of each
launch of one call (torch.profiler); ``--off`` is the fraction of rows with
top-k off (0: every row top-k 50). ``--ops top_k`` times per-request
top-k alone (no top-p), whose rows with top-k off are plain sampling.
``--gated-span 1 4`` times each cell at each GATED_SPAN in turn.
"""
import argparse
import os
import sys

import torch
import triton

sys.path.insert(0, os.path.dirname(__file__))
import tokensampler as ts  # noqa: E402
import tokensampler.triton as tt  # noqa: E402
from bench import make_logits  # noqa: E402
from top_p_rounds import launch_times  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="*", default=[16, 256])
    ap.add_argument("--vocab", type=int, nargs="*", default=[128256])
    ap.add_argument("--off", type=float, nargs="*", default=[0.0, 0.5, 1.0])
    ap.add_argument("--dists", nargs="*", default=["normal1", "normal5"])
    ap.add_argument("--ops", nargs="*", default=["joint"], choices=["joint", "top_k"])
    ap.add_argument("--gated-span", type=int, nargs="*", default=[],
                    help="time each cell at each of these GATED_SPAN values (triton/__init__.py)")
    ap.add_argument("--no-flashinfer", action="store_true")
    args = ap.parse_args()
    fis = None
    if not args.no_flashinfer:
        try:
            import flashinfer.sampling as fis
        except Exception as e:  # noqa: BLE001 - any import failure means "not measured"
            print(f"flashinfer not measured: {type(e).__name__}: {e}")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}, "
          f"tokensampler from {os.path.dirname(ts.__file__)}")
    for op in args.ops:
        for dist in args.dists:
            for V in args.vocab:
                for B in args.batch:
                    for off in args.off:
                        for span in args.gated_span or [tt.GATED_SPAN]:
                            tt.GATED_SPAN = span
                            print(f"span {span} " * bool(args.gated_span)
                                  + measure(op, dist, V, B, off, fis), flush=True)


def measure(op, dist, V, B, off, fis):
    """One cell's line: tokensampler's and FlashInfer's median µs, and the
    GPU µs of each of tokensampler's launches."""
    x = torch.softmax(make_logits(dist, B, V, None, 1)[0], dim=1)
    p = torch.full((B,), 0.9, device="cuda")
    k = torch.full((B,), 50, dtype=torch.int32, device="cuda")
    k[: round(off * B)] = 0
    # FlashInfer's top-k off is k = V (0 is not 'off' there).
    kf = torch.where(k > 0, k, V)
    seed = torch.arange(B, device="cuda") * 31 + 7
    if op == "joint":
        def ts_fn():
            return ts.top_k_top_p_sampling_from_probs(x, k, p, seed=seed)

        def fi_fn():
            return fis.top_k_top_p_sampling_from_probs(x, kf, p)
    else:
        def ts_fn():
            return ts.top_k_sampling_from_probs(x, k, seed=seed)

        def fi_fn():
            return fis.top_k_sampling_from_probs(x, kf)
    us = triton.testing.do_bench(ts_fn, warmup=20, rep=80, return_mode="median") * 1e3
    line = f"{op} {dist} V={V} B={B} top-k off in {off:.0%}: tokensampler {us:7.1f} µs"
    if fis is not None:
        fi = triton.testing.do_bench(fi_fn, warmup=20, rep=80, return_mode="median") * 1e3
        line += f", flashinfer {fi:7.1f} µs, ts/fi {us / fi:.2f}"
    times = launch_times(ts_fn)
    return line + "; launches " + ", ".join(f"{n} {t:.1f}" for n, t in times)

if __name__ == "__main__":
    main()
