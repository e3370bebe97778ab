"""Host cost of the pieces of a small call, on this machine's CPU: a torch
launch, allocations, host-to-device scalars, and one Triton kernel of 16
pointer arguments launched three ways (Triton's own path, launcher.py's direct
path with tensors, and with integer pointers). Rounds are interleaved and the
best round's mean is reported, so a noisy host shows its floor.

    python benchmarks/launch_cost.py
"""
import time

import torch
import triton
import triton.language as tl

import tokensampler as ts
from tokensampler.triton import launcher


@triton.jit
def touch(p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15, n0, n1, n2,
          A: tl.constexpr, B: tl.constexpr):
    if tl.program_id(0) == 0:
        tl.store(p0, tl.load(p1) + tl.load(p15) + n0 + n1 + n2 + A + B)


dev = "cuda"
ptrs = [torch.zeros(64, device=dev) for _ in range(16)]
small = torch.zeros(64, device=dev)
x = torch.softmax(torch.randn(16, 32000, device=dev), 1)
seed_t = torch.tensor([1], device=dev)
off_t = torch.tensor([0], device=dev)


def via(fast, ints):
    def fn():
        launcher.fast_launch, launcher.int_pointers = fast, ints
        launcher.launch(touch, (4, 2), *ptrs, 5, 7, 9, A=1, B=2)
    return fn


cases = {
    "torch add_ (one launch)": lambda: small.add_(1),
    "torch.empty(1024) on cuda": lambda: torch.empty(1024, device=dev),
    "torch.zeros(1) on cuda": lambda: torch.zeros(1, device=dev),
    "torch.tensor([int]) to cuda": lambda: torch.tensor([5], device=dev),
    "triton kernel[grid] (16 ptrs)": lambda: touch[(4, 2)](*ptrs, 5, 7, 9, A=1, B=2),
    "launcher: triton path": via(False, False),
    "launcher: direct, tensors": via(True, False),
    "launcher: direct, int ptrs": via(True, True),
    "ts plain B=16, seed+offset tensors": lambda: ts.sampling_from_probs(x, seed=seed_t,
                                                                          offset=off_t),
    "ts plain B=16, seed int": lambda: ts.sampling_from_probs(x, seed=1),
    "ts top-p B=16, seed+offset tensors": lambda: ts.top_p_sampling_from_probs(
        x, 0.9, seed=seed_t, offset=off_t),
}
for fn in cases.values():
    for _ in range(3):
        fn()
torch.cuda.synchronize()
best = {k: float("inf") for k in cases}
for _ in range(7):
    for name, fn in cases.items():
        t = time.perf_counter()
        for _ in range(100):
            fn()
        best[name] = min(best[name], (time.perf_counter() - t) / 100 * 1e6)
        torch.cuda.synchronize()
launcher.fast_launch, launcher.int_pointers = True, True
print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}")
for name, us in best.items():
    print(f"{name:40s} {us:8.1f} us")
