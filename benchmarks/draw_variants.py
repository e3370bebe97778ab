"""Top-p's round-0 draws (``draw_kernel``, a program per row and draw, each
racing one chunk of 4096 tokens) under other launch options: warps and a
register cap. GPU µs of each launch (torch.profiler); the tokens of every
variant are checked against the shipped form's (warps and caps change no
result: the race's reductions are max and min).

    python benchmarks/draw_variants.py [--batch 16 256 1024] [--vocab 32000 128256] [--real FILE]

The seventeenth session found the draws a fixed 26 µs at B=256 and 88 at
B=1024 (H200), whatever the row; this measures what launch options alone
buy before any code changes.
"""
import argparse
import os
import sys

import torch
import triton

sys.path.insert(0, os.path.dirname(__file__))
import tokensampler as ts  # noqa: E402
from bench import make_logits  # noqa: E402
from layout_variants import measure  # noqa: E402

# (warps, maxnreg): the shipped form first (8 warps a 4096-token chunk, no cap).
VARIANTS = [(None, None), (4, None), (8, 64), (4, 64), (4, 96), (8, 40)]


def draw_options(warps, cap):
    """An edit that makes a layout launch draw_kernel with these options
    (None: as shipped)."""
    def edit(L):
        if L.top_p_alone:
            L.draw_kw = {**L.draw_kw, **({"num_warps": warps} if warps else {}),
                         **({"maxnreg": cap} if cap else {})}

    return edit


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="*", default=[16, 256, 1024])
    ap.add_argument("--vocab", type=int, nargs="*", default=[32000, 128256])
    ap.add_argument("--p", type=float, default=0.9)
    ap.add_argument("--real", default=None)
    args = ap.parse_args()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}")
    real = torch.load(args.real).cuda() if args.real else None
    seed = torch.tensor([1], device="cuda")
    off = torch.tensor([0], device="cuda")
    inputs = [("real", 0)] if real is not None else []
    for dist, vocab in inputs + [("normal1", v) for v in args.vocab]:
        for B in args.batch:
            x = torch.softmax(make_logits(dist, B, vocab, real, 1)[0], dim=1)
            print(f"top-p {args.p} {dist} V={x.shape[1]} B={B}", flush=True)
            baseline = None
            for warps, cap in VARIANTS:
                got = measure(f"warps={warps or 'shipped'},maxnreg={cap or '-'}",
                              draw_options(warps, cap),
                              lambda: ts.top_p_sampling_from_probs(x, args.p, seed=seed,
                                                                   offset=off), baseline)
                baseline = got if baseline is None else baseline


if __name__ == "__main__":
    main()
