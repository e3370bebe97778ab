"""Which per-row steps should run at the end of the launch before them (fused)
and which as launches of their own, by batch size: the numbers that set
``tokensampler.triton.FUSE_ROWS``.

A fused step saves a launch's host time; a separate one spares the launch
before it a tail (and its registers). Eagerly, small batches wait for the
host; large ones for the GPU. For each op and batch on N(0, 1) inputs at
V=128256, every configuration is timed end to end (median of CUDA events,
``triton.testing.do_bench``: what an eager caller sees), with the GPU time
of each kernel from torch.profiler. All in one run on one card, so the
numbers compare.

* top-k 50 (probs) and joint top-k 50 + top-p 0.9 (logits): ``plan`` and
  ``select`` fused or separate (4 configurations);
* top-p 0.9 alone (probs): round 0's ``draws`` in the stats launch's tail or
  in ``draw_kernel``; and (probs and logits) round 0's four draws checked in
  one launch or draw 0 alone first (``round0``).

The histogram steps (``narrow``) serve only ROCm's top-p path, where no step
fuses. Ninth session's reading (benchmarks/RESULTS.md): top-k 50 at B=256 on
an H200 took 241 µs eagerly split (GPU 95) and, fused, 197 µs at B=64; the
fused form at B=256 and both forms at 128 and 512 are what this measures.

    python benchmarks/profile_fusion.py [--batch 64 128 256 512 1024]
"""
import argparse
import itertools
from collections import defaultdict

import torch
import triton
from torch.profiler import ProfilerActivity, profile

import tokensampler as ts
import tokensampler.triton as tt

ON, OFF = 1 << 30, 0   # FUSE_ROWS values: fused at any batch, or never


def kernel_times(fn, reps=5):
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    per = defaultdict(float)
    for e in prof.key_averages():
        if e.device_time_total > 0:
            per[e.key.split("(")[0][:16]] += e.device_time_total / reps
    return per


def configurations():
    """(op name, FUSE_ROWS overrides, label) for every configuration timed."""
    for op in ("top_k_50", "joint_logits"):
        for plan, select in itertools.product((True, False), repeat=2):
            label = "+".join(s for s, f in (("plan", plan), ("select", select)) if f) or "split"
            yield op, {"plan": ON if plan else OFF, "select": ON if select else OFF}, label
    for tail in (True, False):
        yield ("top_p_0.9", {"draws": ON if tail else OFF, "round0": ON},
               "draws in tail" if tail else "draw_kernel")
    # Round 0's four draws checked in one launch, or draw 0 alone first
    # (FUSE_ROWS["round0"]: the batch where the second wins is its threshold).
    yield "top_p_0.9", {"draws": OFF, "round0": OFF}, "draw 0 first"
    yield "top_p_0.9_logits", {"draws": OFF, "round0": ON}, "four at once"
    yield "top_p_0.9_logits", {"draws": OFF, "round0": OFF}, "draw 0 first"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="*", default=[64, 128, 256, 512, 1024])
    ap.add_argument("--vocab", type=int, default=128256)
    args = ap.parse_args()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}")
    saved = dict(tt.FUSE_ROWS)
    for batch in args.batch:
        g = torch.Generator(device="cuda").manual_seed(batch)
        logits = torch.randn(batch, args.vocab, device="cuda", generator=g)
        probs = torch.softmax(logits, 1)
        seed = torch.tensor([1], device="cuda")
        ops = {"top_k_50": lambda: ts.top_k_sampling_from_probs(probs, 50, seed=seed, offset=seed),
               "joint_logits": lambda: ts.top_k_top_p_sampling_from_logits(
                   logits, 50, 0.9, seed=seed, offset=seed),
               "top_p_0.9": lambda: ts.top_p_sampling_from_probs(probs, 0.9, seed=seed,
                                                                  offset=seed),
               "top_p_0.9_logits": lambda: ts.top_k_top_p_sampling_from_logits(
                   logits, None, 0.9, seed=seed, offset=seed)}
        try:
            for op, rows, label in configurations():
                tt.FUSE_ROWS = {**saved, **rows}
                fn = ops[op]
                us = triton.testing.do_bench(fn, warmup=25, rep=200) * 1e3
                per = kernel_times(fn)
                parts = ", ".join(f"{k} {v:.0f}"
                                  for k, v in sorted(per.items(), key=lambda kv: -kv[1]))
                print(f"B={batch:5d} {op:16s} {label:14s} eager {us:7.1f} us | "
                      f"GPU {sum(per.values()):7.1f}: {parts}", flush=True)
        finally:
            tt.FUSE_ROWS = saved


if __name__ == "__main__":
    main()
