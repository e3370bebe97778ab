"""The stats pass (``stats_kernel``) of plain sampling, min-p and top-p alone
(and of top-k and joint, ``--ops``) under other warps and register caps: GPU
µs of each launch (torch.profiler), and whether the tokens equal the shipped
form's.

    python benchmarks/stats_variants.py [--batch 256 1024] [--vocab 128256]
        [--ops plain top_p min_p top_k joint] [--variants 4:- 8:56 ...]

Nsight Compute (nineteenth session, H200, B=1024, V=128256) found this pass
at 66% of DRAM bandwidth where a torch row sum over the same tensor reached
89%: at 4 warps a thread held 32 tokens of a 4096-token chunk, 166
registers, 12 warps an SM (17% occupancy). More warps a program hold fewer
tokens a thread; the shipped form is now 8 warps capped for four programs.
Warps change the order of the chunk sums, so the chunk masses may differ in
their last bits and a token may differ at a float32 boundary: "same tokens"
is informative for warps, and must hold for caps.
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

# WARPS:CAP (CAP "-": uncapped); the shipped form is always measured first
# (plain, min-p, top-p alone: 8 warps capped at 64 registers on an H200 since
# the nineteenth session, 4 warps uncapped before; top-k and joint: 8 warps
# capped at 64 above FUSE_ROWS["plan"] since the twentieth, at 80 before and
# where plan_row is in the tail).
DEFAULT_VARIANTS = ["4:-", "8:-", "8:56", "8:48"]
OPS = {
    "plain": lambda x, kw: ts.sampling_from_probs(x, **kw),
    "top_p": lambda x, kw: ts.top_p_sampling_from_probs(x, 0.9, **kw),
    "min_p": lambda x, kw: ts.min_p_sampling_from_probs(x, 0.1, **kw),
    "top_k": lambda x, kw: ts.top_k_sampling_from_probs(x, 50, **kw),
    "joint": lambda x, kw: ts.top_k_top_p_sampling_from_probs(x, 50, 0.9, **kw),
}


def parse_variant(text):
    """"8:64" -> (8, 64); "8:-" -> (8, None)."""
    warps, _, cap = text.partition(":")
    return int(warps), (None if cap in ("", "-") else int(cap))


def stats_options(warps, cap):
    """An edit that makes a layout launch stats_kernel with these options
    (warps None: as shipped; a variant's cap None: no cap)."""
    def edit(L):
        if warps:
            kw = {k: v for k, v in L.stats_kw.items() if k != "maxnreg"}
            L.stats_kw = {**kw, "num_warps": warps, **({"maxnreg": cap} if cap else {})}

    return edit


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="*", default=[256, 1024])
    ap.add_argument("--vocab", type=int, nargs="*", default=[128256])
    ap.add_argument("--ops", nargs="*", default=["plain", "top_p", "min_p"], choices=list(OPS))
    ap.add_argument("--variants", nargs="*", default=DEFAULT_VARIANTS,
                    help="WARPS:CAP each, e.g. 8:64 or 4:- (uncapped)")
    args = ap.parse_args()
    variants = [(None, None)] + [parse_variant(v) for v in args.variants]
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}")
    kw = dict(seed=torch.tensor([1], device="cuda"), offset=torch.tensor([0], device="cuda"))
    for vocab in args.vocab:
        for B in args.batch:
            x = torch.softmax(make_logits("normal1", B, vocab, None, 1)[0], dim=1)
            for op in args.ops:
                print(f"{op} normal1 V={vocab} B={B}", flush=True)
                baseline = None
                for warps, cap in variants:
                    got = measure(f"warps={warps or 'shipped'},maxnreg={cap or '-'}",
                                  stats_options(warps, cap), lambda: OPS[op](x, kw), baseline)
                    baseline = got if baseline is None else baseline


if __name__ == "__main__":
    main()
