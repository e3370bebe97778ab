"""Time the stats kernel alone at B=256, V=128256 (probs) for num_warps 4, 8, 16.

    python benchmarks/tune_stats.py
"""
import torch, triton
from tokensampler.triton import chunked
B, V, CH = 256, 128256, 4096
C = triton.cdiv(V, CH)
x = torch.softmax(torch.randn(B, V, device="cuda"), 1)
pi = torch.empty(B * C * 6, dtype=torch.int32, device="cuda")
pf = torch.empty(B * C * 3, dtype=torch.float32, device="cuda")
gm = torch.empty(B * C * 128, dtype=torch.int32, device="cuda")
d = torch.empty(1, device="cuda")
flags = dict(HAS_INDICES=False, FROM_LOGITS=False, T_ROW=False)
floor = triton.testing.do_bench(lambda: torch.amax(x, 1), return_mode="median") * 1e3
print(f"amax floor {floor:.1f} us")
for gmv in (False, True):
    for w in (4, 8, 16):
        f = lambda: chunked.stats_kernel[(B, C)](x, V, V, B, C, d, d, 1.0, pi, pf, gm, WITH_GM=gmv, CHUNK=CH, GROUP=32, num_warps=w, **flags)
        f()
        print(f"stats WITH_GM={gmv} warps={w}: {triton.testing.do_bench(f, return_mode='median')*1e3:.1f} us")
