"""Why a call's eager median in bench.py can sit far above its host time.

``triton.testing.do_bench`` zeroes a 256 MB buffer before each call (an L2
flush), and the host issues the call while that memset runs, so a
host-bound call can measure its host time less the memset's. The
twelfth session's grid (H100, tree c95cb2d) had top-p at 163-194 µs eager
for every V and B <= 64, where host_paths.py, on another H100 host,
measured 135 µs of host time a call and top-k 50 about 125. This runs each op the way bench.py does (its
providers, its inputs, its timing) and prints, side by side: the host time
a call, the launcher's path counts (direct or Triton's own), the eager
median, the median without the flush, and the graph replay; then the host
cost of an int seed made into a tensor two ways, and host_paths.py's
pieces (a launch's host cost by its arguments).

    python benchmarks/eager_gap.py [--vocab 128256] [--batch 1] [--ops top_p_0.9 top_k_50]
"""
import argparse
import torch
import triton

import bench
import host_paths
from tokensampler.triton import launcher


def no_flush_us(fn):
    """Median µs of a call by CUDA events, without do_bench's L2 flush."""
    start = [torch.cuda.Event(enable_timing=True) for _ in range(100)]
    end = [torch.cuda.Event(enable_timing=True) for _ in range(100)]
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    for s, e in zip(start, end):
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    return sorted(s.elapsed_time(e) for s, e in zip(start, end))[50] * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--batch", type=int, nargs="*", default=[1, 64])
    ap.add_argument("--ops", nargs="*", default=["top_p_0.9", "top_k_50", "plain"])
    a = ap.parse_args()
    try:
        import flashinfer
        import flashinfer.sampling  # noqa: F401
    except Exception:   # noqa: BLE001
        flashinfer = None
    print(torch.cuda.get_device_name(), torch.__version__, triton.__version__)
    print(f"{'op':12s} {'B':>5s} {'host':>7s} {'eager':>7s} {'noflush':>8s} {'graph':>7s}"
          f"  paths (direct, triton) during eager")
    for batch in a.batch:
        for op in a.ops:
            from_logits = bench.op_spec(op)[0]
            elems = batch * a.vocab
            copies = max(1, min(4, (256 << 20) // (elems * 4)))
            logits = bench.make_logits("normal1", batch, a.vocab, None, copies)
            inputs = logits if from_logits else [torch.softmax(x, dim=1) for x in logits]
            seed_t = torch.tensor([1], device="cuda")
            offset_t = torch.tensor([0], device="cuda")
            fns = bench.provider_fns(op, flashinfer)
            for name in ("tokensampler", "flashinfer"):
                fn = fns.get(name)
                if fn is None:
                    continue
                state = {"i": 0}

                def call():
                    state["i"] += 1
                    return fn(inputs[state["i"] % len(inputs)], seed_t, offset_t)

                host = host_paths.host_us(call, rounds=1)
                before = dict(launcher.counts)
                eager = bench.time_eager(fn, inputs, seed_t, offset_t)
                paths = {k: launcher.counts[k] - before.get(k, 0) for k in launcher.counts}
                flat = no_flush_us(call)
                # FlashInfer 0.5.3 makes a generator inside: it cannot be captured.
                graph = (f"{bench.time_graph(fn, inputs, seed_t, offset_t):7.1f}"
                         if name == "tokensampler" else f"{'-':>7s}")
                print(f"{op[:12]:12s} {batch:5d} {host:7.1f} {eager:7.1f} {flat:8.1f} "
                      f"{graph}  {name} {paths if name == 'tokensampler' else ''}")
    dev = torch.device("cuda")
    for label, make in (("torch.tensor([s], device=cuda)",
                         lambda: torch.tensor([12345], dtype=torch.int64, device=dev)),
                        ("torch.full((1,), s, device=cuda)",
                         lambda: torch.full((1,), 12345, dtype=torch.int64, device=dev))):
        print(f"{label:36s} {host_paths.host_us(make, rounds=1):7.1f} us host a call")
    host_paths.pieces()   # what a launch costs, by its arguments


if __name__ == "__main__":
    main()
