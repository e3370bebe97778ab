"""Child process of test_gpu.py: a kernel that never finishes, under the watchdog.

``python tests/hang_child.py release`` launches a kernel that spins until a
flag in GPU memory turns 1, waits for it under a 2 s watchdog, expects
SamplingTimeoutError, then sets the flag from another stream and shows that
the GPU recovers (the kernel ends, a sampler runs). ``abandon`` never sets
the flag and exits with the kernel still spinning. Prints one line per event.
"""

import sys
import time

import torch
import triton
import triton.language as tl

import tokensampler as ts
from tokensampler import watchdog


@triton.jit
def spin_until_set(flag_ptr, out_ptr):
    # Test-only: waits on a flag no one sets (an unbounded loop on purpose).
    spins = 0
    while tl.load(flag_ptr, volatile=True) == 0:
        spins += 1
    tl.store(out_ptr, spins)


def main(mode: str) -> None:
    work = torch.cuda.Stream()     # non-blocking streams: the release can overtake
    side = torch.cuda.Stream()
    flag = torch.ones(1, dtype=torch.int32, device="cuda")
    out = torch.zeros(1, dtype=torch.int64, device="cuda")
    with torch.cuda.stream(work):
        spin_until_set[(1,)](flag, out)   # compile first, with the flag already set
        torch.cuda.synchronize()
        flag.zero_()
        torch.cuda.synchronize()
        start = time.monotonic()
        try:
            watchdog.guarded("spin_until_set", flag, 2.0,
                             lambda: watchdog.stage("launch spin_until_set")
                             or spin_until_set[(1,)](flag, out))
            print("NO TIMEOUT", flush=True)
        except ts.SamplingTimeoutError as err:
            print(f"TIMEOUT after {time.monotonic() - start:.2f} s; stage: {err.stage}; "
                  f"last finished: {err.last_finished}", flush=True)
            print(f"MESSAGE {err}", flush=True)
    if mode == "release":
        with torch.cuda.stream(side):
            flag.fill_(1)
        start = time.monotonic()
        torch.cuda.synchronize()
        print(f"RELEASED: the kernel ended {time.monotonic() - start:.3f} s after the flag "
              f"was set, having spun {int(out.item())} times", flush=True)
        probs = torch.softmax(torch.randn(4, 1000, device="cuda"), dim=1)
        ids = ts.top_p_sampling_from_probs(probs, 0.9, seed=1, timeout_s=30)
        print(f"RECOVERED: sampled {ids.tolist()}", flush=True)
    else:
        print("EXITING with the kernel still spinning", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
