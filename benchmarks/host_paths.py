"""Where a small eager call's host time goes, and what the other ways of
issuing the same GPU work would cost, on this machine's CPU, in one run.

1. Pieces: a torch launch, allocations, a clone, CUDA-graph replays, and a
   Triton kernel of 4, 16 and 40 arguments launched as ``kernel[grid]`` and
   through its compiled variant's ``run`` (Triton's binder skipped).
2. Per op at B = 1, 16, 64 (V=128256): tokensampler eager; its Python alone
   (launches replaced by nothing); the same call replayed from a CUDA graph,
   with and without copying the outputs out; FlashInfer eager. Medians by
   ``triton.testing.do_bench`` (host-bound calls measure the host).
3. cProfile of one op's eager calls: Triton's share against ours.

    python benchmarks/host_paths.py [--ops plain,top_p] [--batches 1,16,64]
"""
import argparse
import cProfile
import io
import pstats
import time

import torch
import triton
import triton.language as tl
from triton.testing import do_bench

import tokensampler as ts
import tokensampler.triton as tt


@triton.jit
def touch4(p0, p1, p2, n0):
    if tl.program_id(0) == 0:
        tl.store(p0, tl.load(p1) + tl.load(p2) + n0)


@triton.jit
def touch16(p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, n0, n1, n2, n3):
    if tl.program_id(0) == 0:
        tl.store(p0, tl.load(p1) + tl.load(p11) + n0 + n1 + n2 + n3)


@triton.jit
def touch40(p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15, p16, p17,
            p18, p19, n0, n1, n2, n3, n4, n5, n6, n7, n8, n9, f0, f1,
            A: tl.constexpr, B: tl.constexpr, C: tl.constexpr, D: tl.constexpr,
            E: tl.constexpr, F: tl.constexpr, G: tl.constexpr, H: tl.constexpr):
    if tl.program_id(0) == 0:
        tl.store(p0, tl.load(p1) + tl.load(p19) + n0 + n9 + f0 + f1 + A + H)


def host_us(fn, reps=200, rounds=7):
    """Best round's mean host microseconds a call (the GPU is not waited for)."""
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t) / reps * 1e6)
        torch.cuda.synchronize()
    return best


def pieces():
    dev = "cuda"
    ptrs = [torch.zeros(64, device=dev) for _ in range(20)]
    small = torch.zeros(64, device=dev)
    out = torch.zeros(64, dtype=torch.int32, device=dev)
    drv = triton.runtime.driver.active
    stream = drv.get_current_stream(drv.get_current_device())
    kernels = {
        "4 args": (touch4, (*ptrs[:3], 5), {}),
        "16 args": (touch16, (*ptrs[:12], 5, 6, 7, 8), {}),
        "40 args (20 ptrs, 12 scalars, 8 constexpr)":
            (touch40, (*ptrs[:20], *range(3, 13), 0.5, 0.25),
             dict(A=1, B=2, C=3, D=True, E=False, F=64, G=4, H=5)),
    }
    cases = {
        "torch add_ (one launch)": lambda: small.add_(1),
        "torch.empty(1024) on cuda": lambda: torch.empty(1024, device=dev),
        "torch.zeros(1024) on cuda (a memset)": lambda: torch.zeros(1024, device=dev),
        "clone of an int32 (64,)": lambda: out.clone(),
    }
    for name, (k, args, kw) in kernels.items():
        cases[f"triton kernel[grid], {name}"] = lambda k=k, args=args, kw=kw: k[(4,)](*args, **kw)
        compiled = k[(4,)](*args, **kw)
        full = (*args, *kw.values())
        cases[f"compiled.run, {name}"] = (
            lambda c=compiled, full=full: c.run(4, 1, 1, stream, c.function, c.packed_metadata,
                                                None, None, None, *full))
        # Triton's launcher takes an int as a pointer as it is, without calling
        # data_ptr() and asking the driver about the address (cuPointerGetAttribute).
        ints = tuple(a.data_ptr() if isinstance(a, torch.Tensor) else a for a in full)
        cases[f"compiled.run, {name}, pointers as ints"] = (
            lambda c=compiled, full=ints: c.run(4, 1, 1, stream, c.function, c.packed_metadata,
                                                None, None, None, *full))
    for nodes in (1, 6):
        g = torch.cuda.CUDAGraph()
        s = torch.cuda.Stream()
        with torch.cuda.stream(s):
            g.capture_begin()
            for _ in range(nodes):
                touch16[(4,)](*ptrs[:12], 5, 6, 7, 8)
            g.capture_end()
        torch.cuda.synchronize()
        cases[f"CUDA graph replay, {nodes} triton node(s)"] = g.replay
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}")
    print("\n1. host us per call (best of 7 rounds of 200)")
    for name, fn in cases.items():
        print(f"  {name:55s} {host_us(fn):7.1f}", flush=True)


def op_fns(x, logits, seed, off):
    return {
        "plain": lambda: ts.sampling_from_probs(x, seed=seed, offset=off, return_valid=True),
        "top_p": lambda: ts.top_p_sampling_from_probs(x, 0.9, seed=seed, offset=off,
                                                      return_valid=True),
        "top_k": lambda: ts.top_k_sampling_from_probs(x, 50, seed=seed, offset=off,
                                                      return_valid=True),
        "min_p": lambda: ts.min_p_sampling_from_probs(x, 0.1, seed=seed, offset=off,
                                                      return_valid=True),
        "joint_logits": lambda: ts.top_k_top_p_sampling_from_logits(
            logits, 50, 0.9, seed=seed, offset=off, return_valid=True),
    }


def fi_fns(x, logits):
    try:
        import flashinfer.sampling as fs
    except Exception as e:  # noqa: BLE001 - not measured
        print(f"flashinfer not measured: {e}")
        return {}
    return {
        "plain": lambda: fs.sampling_from_probs(x),
        "top_p": lambda: fs.top_p_sampling_from_probs(x, 0.9),
        "top_k": lambda: fs.top_k_sampling_from_probs(x, 50),
        "min_p": lambda: fs.min_p_sampling_from_probs(x, 0.1),
        "joint_logits": lambda: fs.top_k_top_p_sampling_from_logits(logits, 50, 0.9),
    }


def back_to_back(fn, calls=100):
    for _ in range(10):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1e3 / calls


def graph_of(fn):
    """One call captured; returns (replay, replay + copy of the outputs out)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
        g = torch.cuda.CUDAGraph()
        g.capture_begin()
        out, valid = fn()
        g.capture_end()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()

    def copied():
        g.replay()
        return out.clone(), valid.clone()

    return g.replay, copied


def per_op(ops, batches, vocab=128256):
    print(f"\n2. per call, V={vocab}: median us by do_bench (host-bound calls time the host);"
          " 'python' = host us with every launch replaced by nothing")
    print("  'host' = host us a call with its launches (tight loop); 'events' = CUDA events"
          " around 100 back-to-back calls (no L2 flush between them), us a call")
    print(f"  {'op':13s} {'B':>5s} {'ts eager':>9s} {'host':>7s} {'events':>7s} {'python':>7s} "
          f"{'graph':>7s} {'graph+copy':>10s} {'fi eager':>9s} {'fi events':>9s}")
    seed = torch.tensor([1], device="cuda")
    off = torch.tensor([0], device="cuda")
    for b in batches:
        logits = torch.randn(b, vocab, device="cuda")
        x = torch.softmax(logits, 1)
        fns, fis = op_fns(x, logits, seed, off), fi_fns(x, logits)
        for name in ops:
            fn = fns[name]
            eager = do_bench(fn, warmup=20, rep=100, return_mode="median") * 1e3
            host = host_us(fn)
            events = back_to_back(fn)
            real = tt.launch_with
            tt.launch_with = lambda *a: None
            try:
                python = host_us(fn)
            finally:
                tt.launch_with = real
            replay, copied = graph_of(fn)
            gr = do_bench(replay, warmup=20, rep=100, return_mode="median") * 1e3
            gc = do_bench(copied, warmup=20, rep=100, return_mode="median") * 1e3
            fi = fi_ev = float("nan")
            if name in fis:
                fi = do_bench(fis[name], warmup=20, rep=100, return_mode="median") * 1e3
                fi_ev = back_to_back(fis[name])
            print(f"  {name:13s} {b:5d} {eager:9.1f} {host:7.1f} {events:7.1f} {python:7.1f} "
                  f"{gr:7.1f} {gc:10.1f} {fi:9.1f} {fi_ev:9.1f}", flush=True)


def profile(op, batch=16, vocab=128256):
    logits = torch.randn(batch, vocab, device="cuda")
    x = torch.softmax(logits, 1)
    seed = torch.tensor([1], device="cuda")
    off = torch.tensor([0], device="cuda")
    fn = op_fns(x, logits, seed, off)[op]
    print(f"\n3. cProfile, {op}, B={batch}, 300 calls (tottime first)")
    print(cprofile(fn, 300, 22))


def cprofile(fn, calls, top):
    """cProfile's table of ``calls`` calls of ``fn`` (after 20 unprofiled
    ones), its ``top`` functions by their own time."""
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(calls):
        fn()
    pr.disable()
    torch.cuda.synchronize()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(top)
    return s.getvalue()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", default="plain,top_p,top_k,min_p,joint_logits")
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--profile", default="top_k", help="ops to profile; '' for none")
    ap.add_argument("--no-pieces", action="store_true")
    a = ap.parse_args()
    from tokensampler.triton import launcher
    print(f"direct launches: {launcher.DIRECT} (TOKENSAMPLER_DIRECT_LAUNCH)")
    if not a.no_pieces:
        pieces()
    per_op(a.ops.split(","), [int(b) for b in a.batches.split(",")])
    for op in filter(None, a.profile.split(",")):
        profile(op)
    print(f"launches of keyed calls, by path: {launcher.counts}")
