"""First-call latency (cold, warm disk cache, after warmup) and the watchdog's cost.

Run on the GPU machine: ``python benchmarks/reliability_timing.py``. Each
first call is measured in a fresh child process (so nothing is cached in
memory); "cold" gives the child an empty Triton cache directory, "disk"
reuses the directory the cold child filled, "warmed" calls
``tokensampler.warmup`` first and then times the first request. The
watchdog's cost is the median host time of a synchronised call with and
without ``timeout_s``, in the same process (``--watchdog-only``: just that).
Prints JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, sys, time
import torch
t0 = time.perf_counter()
import tokensampler as ts
torch.cuda.init(); torch.zeros(1, device="cuda"); torch.cuda.synchronize()
logits = torch.randn(16, 128256, device="cuda", dtype=torch.bfloat16)
seeds = torch.arange(16, device="cuda")
k = torch.full((16,), 50, device="cuda"); p = torch.full((16,), 0.9, device="cuda")
t = torch.full((16,), 0.7, device="cuda")
out = {}
if sys.argv[1] == "warmed":
    s = time.perf_counter()
    ts.warmup([128256], [torch.bfloat16], "cuda", per_row=(True,))
    out["warmup_s"] = time.perf_counter() - s
def call():
    s = time.perf_counter()
    ts.top_k_top_p_sampling_from_logits(logits, k, p, seed=seeds, temperature=t)
    torch.cuda.synchronize()
    return time.perf_counter() - s
out["first_call_s"] = call()
out["second_call_s"] = call()
print(json.dumps(out))
"""


def child(mode: str, cache: str) -> dict:
    env = dict(os.environ, TRITON_CACHE_DIR=cache)
    proc = subprocess.run([sys.executable, "-c", CHILD, mode], env=env, capture_output=True,
                          text=True, timeout=600)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def watchdog_cost(batch: int, vocab: int, reps: int = 300) -> dict:
    import torch

    import tokensampler as ts

    logits = torch.randn(batch, vocab, device="cuda")
    result = {}
    for label, kw in (("no timeout", {}), ("timeout_s=10", {"timeout_s": 10.0})):
        times = []
        for i in range(reps + 20):
            s = time.perf_counter()
            ts.top_k_top_p_sampling_from_logits(logits, 50, 0.9, seed=i, **kw)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - s)
        result[label] = round(statistics.median(times[20:]) * 1e6, 1)
    return result


def main() -> None:
    import torch

    report = {"card": torch.cuda.get_device_name(), "torch": torch.__version__}
    if "--watchdog-only" in sys.argv:
        report["watchdog_us"] = {f"B={b} V={v}": watchdog_cost(b, v)
                                 for b, v in ((1, 32000), (256, 128256))}
        print(json.dumps(report, indent=1))
        return
    with tempfile.TemporaryDirectory() as cache:
        report["cold"] = child("plain", cache)      # empty cache: compiles
        report["disk"] = child("plain", cache)      # compiled kernels on disk
    with tempfile.TemporaryDirectory() as cache:
        report["warmed_cold_cache"] = child("warmed", cache)
        report["warmed_disk_cache"] = child("warmed", cache)
    report["watchdog_us"] = {f"B={b} V={v}": watchdog_cost(b, v)
                             for b, v in ((1, 32000), (256, 128256))}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
