"""Where a small eager call's host time goes, launch by launch, on this
machine's CPU: each op's host µs a call (a tight loop of calls, GPU work far
shorter), with the kernels' launcher replaced in turn by

  real      the launcher as shipped (launcher._run: the compiled variant's
            ``run``, Triton's Python wrapper around its C launcher);
  ints      the same, every tensor argument passed as its address (an int):
            Triton's C launcher then skips a driver query per pointer;
  nothing   no launch at all (the Python around the launches);

then the host µs of each launch by kernel (perf_counter around ``run``), a
cProfile of the real calls, and FlashInfer's host µs a call beside them.
Last, one top-p call's launches repeated with their recorded arguments, made
three ways: Triton's launcher with the tensors (as shipped), with their
addresses taken beforehand, and its C function called directly (skipping
the Python wrapper; only where the wrapper is Triton 3.6's).

    python benchmarks/launch_cost.py [--batch 1] [--vocab 128256] [--quick]

``--quick``: the first table only, "real" and "nothing" columns.
"""
import argparse
import statistics
import time
from collections import defaultdict

import torch
import triton

import host_paths
import tokensampler as ts
from tokensampler.triton import launcher


def host_us(fn, calls=1000, rounds=7):
    """Median over rounds of the host µs a call, in a tight loop."""
    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        out.append((time.perf_counter() - t) / calls * 1e6)
        torch.cuda.synchronize()
    return statistics.median(out)


real_run = launcher._run


def ints_run(site, grid, args):
    real_run(site, grid, tuple(a.data_ptr() if isinstance(a, torch.Tensor) else a
                               for a in args))


def nothing_run(site, grid, args):
    pass


per_kernel = defaultdict(list)


def timed_run(site, grid, args):
    t = time.perf_counter()
    real_run(site, grid, args)
    per_kernel[site.kernel.fn.__name__].append((time.perf_counter() - t) * 1e6)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}")
    g = torch.Generator(device="cuda").manual_seed(0)
    logits = torch.randn(a.batch, a.vocab, device="cuda", generator=g)
    x = torch.softmax(logits, 1)
    seed = torch.tensor([1], device="cuda")
    ops = {
        "plain": lambda: ts.sampling_from_probs(x, seed=seed, return_valid=True),
        "top_p": lambda: ts.top_p_sampling_from_probs(x, 0.9, seed=seed, return_valid=True),
        "top_k": lambda: ts.top_k_sampling_from_probs(x, 50, seed=seed, return_valid=True),
        "min_p": lambda: ts.min_p_sampling_from_probs(x, 0.1, seed=seed, return_valid=True),
        "joint_logits": lambda: ts.top_k_top_p_sampling_from_logits(
            logits, 50, 0.9, seed=seed, return_valid=True),
        "top_p int seed": lambda: ts.top_p_sampling_from_probs(x, 0.9, seed=1, return_valid=True),
    }
    try:
        import flashinfer.sampling as fs
        fis = {"plain": lambda: fs.sampling_from_probs(x),
               "top_p": lambda: fs.top_p_sampling_from_probs(x, 0.9),
               "top_k": lambda: fs.top_k_sampling_from_probs(x, 50),
               "min_p": lambda: fs.min_p_sampling_from_probs(x, 0.1),
               "joint_logits": lambda: fs.top_k_top_p_sampling_from_logits(logits, 50, 0.9)}
    except Exception as e:   # noqa: BLE001 - not measured
        print(f"flashinfer not measured: {e}")
        fis = {}
    print(f"B={a.batch}, V={a.vocab}: host µs a call")
    print(f"{'op':15s} {'real':>7s} {'ints':>7s} {'nothing':>8s} {'fi':>7s}  per launch (real)")
    for name, fn in ops.items():
        row = {}
        for variant, run in (("real", real_run), ("ints", ints_run), ("nothing", nothing_run)):
            if a.quick and variant == "ints":
                row[variant] = float("nan")
                continue
            launcher._run = run
            try:
                row[variant] = host_us(fn)
            finally:
                launcher._run = real_run
        if a.quick:
            print(f"{name:15s} {row['real']:7.1f} {row['ints']:7.1f} {row['nothing']:8.1f}",
                  flush=True)
            continue
        per_kernel.clear()
        launcher._run = timed_run
        try:
            host_us(fn, calls=200, rounds=3)
        finally:
            launcher._run = real_run
        launches = "; ".join(f"{k} {statistics.median(v):.1f}" for k, v in per_kernel.items())
        fi = host_us(fis[name]) if name in fis else float("nan")
        print(f"{name:15s} {row['real']:7.1f} {row['ints']:7.1f} {row['nothing']:8.1f} "
              f"{fi:7.1f}  {launches}", flush=True)
    print(f"launches by path: {launcher.counts}")
    if a.quick:
        return
    one_launch(x)
    for name in ("top_p", "plain"):
        print(f"\ncProfile, {name}, 1000 calls (tottime first)\n"
              f"{host_paths.cprofile(ops[name], 1000, 25)}")


def one_launch(x):
    """Section 4: each launch of a top-p call, repeated alone."""
    import inspect
    recorded = []

    def record(site, grid, args):
        recorded.append((site, grid, args))
        real_run(site, grid, args)

    seed = torch.tensor([1], device="cuda")
    fn = lambda: ts.top_p_sampling_from_probs(x, 0.9, seed=seed)
    fn()
    fn()
    launcher._run = record
    try:
        fn()
    finally:
        launcher._run = real_run
    torch.cuda.synchronize()
    stream = launcher._device_and_stream()[1]
    print("\none launch, host µs (2000 in a row), by how it is made:")
    print(f"  {'kernel':16s} {'args':>4s} {'ptrs':>4s} {'tensors':>8s} {'ints':>6s} {'C direct':>9s}")
    for site, grid, args in recorded:
        g = (grid[0], grid[1] if len(grid) > 1 else 1, 1)
        ints = tuple(a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args)
        ptrs = sum(isinstance(a, torch.Tensor) for a in args)
        run = site.run
        t_tensors = host_us(lambda: run(*g, stream, site.function, site.meta, None, None, None,
                                        *args, *site.tail), calls=2000, rounds=5)
        t_ints = host_us(lambda: run(*g, stream, site.function, site.meta, None, None, None,
                                     *ints, *site.tail), calls=2000, rounds=5)
        t_c = float("nan")
        params = list(inspect.signature(type(run).__call__).parameters)
        if (params == ["self", "gridX", "gridY", "gridZ", "stream", "function", "args"]
                and run.global_scratch_size == 0 and run.profile_scratch_size == 0):
            c, coop, pdl = run.launch, run.launch_cooperative_grid, run.launch_pdl
            t_c = host_us(lambda: c(*g, stream, site.function, coop, pdl, None, None, site.meta,
                                    None, None, None, *ints, *site.tail), calls=2000, rounds=5)
        print(f"  {site.kernel.fn.__name__:16s} {len(args) + len(site.tail):4d} {ptrs:4d} "
              f"{t_tensors:8.1f} {t_ints:6.1f} {t_c:9.1f}", flush=True)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
