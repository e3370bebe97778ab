"""Host cost of the pieces of a small call, on this machine's CPU: a torch
launch, allocations, host-to-device scalars, and one Triton kernel of 16
pointer arguments launched three ways: ``kernel[grid](...)`` (what
tokensampler does), and its compiled variant's ``run`` called directly, with
tensors or with integer pointers (skipping Triton's argument binding and
specialisation, and the launcher's ``data_ptr`` calls). Rounds are
interleaved and the best round's mean is reported, so a noisy host shows its
floor.

The direct launch was tried in launcher.py and taken out: it saved about 3 us
of the 25-28 us a launch costs on the H100 machine (the rest is Triton's C
launcher and the driver), and it leaned on Triton internals that change
between releases.

    python benchmarks/launch_cost.py
"""
import time

import torch
import triton
import triton.language as tl

import tokensampler as ts


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


compiled = touch[(4, 2)](*ptrs, 5, 7, 9, A=1, B=2)
driver = triton.runtime.driver.active


def direct(args):
    def fn():
        stream = driver.get_current_stream(driver.get_current_device())
        compiled.run(4, 2, 1, stream, compiled.function, compiled.packed_metadata, None, None,
                     None, *args, 5, 7, 9, 1, 2)
    return fn


cases = {
    "torch add_ (one launch)": lambda: small.add_(1),
    "torch.empty(1024) on cuda": lambda: torch.empty(1024, device=dev),
    "torch.zeros(1) on cuda": lambda: torch.zeros(1, device=dev),
    "torch.tensor([int]) to cuda": lambda: torch.tensor([5], device=dev),
    "triton kernel[grid] (16 ptrs)": lambda: touch[(4, 2)](*ptrs, 5, 7, 9, A=1, B=2),
    "compiled.run, tensors": direct(ptrs),
    "compiled.run, int pointers": direct([t.data_ptr() for t in ptrs]),
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
print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}")
for name, us in best.items():
    print(f"{name:40s} {us:8.1f} us")
