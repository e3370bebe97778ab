"""Side-by-side GPU benchmark of tokensampler and its peers, in one run on one card.

Providers (every one measured in the same process, on the same inputs):
  tokensampler   the Triton backend
  flashinfer     flashinfer.sampling, when it imports
  torch_sort     the pure-PyTorch path engines fall back to: softmax, sort,
                 cumsum, mask, scatter, exponential race
  multinomial    torch.multinomial on unfiltered probs (plain sampling only)
  floor          one read of the op's input (torch.amax over rows): the fewest
                 bytes any provider must move

Writes results.csv, results.md and latency.png to --out, with the card, the
versions and every provider named. Median microseconds by CUDA events
(triton.testing.do_bench), plus CUDA-graph replay time for small batches.

    python benchmarks/bench.py --out /tmp/bench --quick
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import signal
import sys
from dataclasses import dataclass

import torch

VOCABS = (32000, 128256, 151936, 262144)
BATCHES = (1, 16, 64, 256, 1024)
OPS = ("top_p_0.9", "top_p_0.5", "top_k_50", "top_k_1000", "min_p_0.1", "joint_probs",
       "joint_logits", "plain")
DISTS = ("normal1", "normal5", "real")
GRAPH_BATCHES = (1, 16)


@dataclass
class Case:
    op: str
    dist: str
    vocab: int
    batch: int


def make_logits(dist: str, batch: int, vocab: int, real: torch.Tensor | None, copies: int):
    """``copies`` input sets, rotated between timed calls so L2 does not serve repeats."""
    g = torch.Generator(device="cuda").manual_seed(batch * 7 + vocab)
    out = []
    for _ in range(copies):
        if dist == "real":
            rows = real[torch.randint(0, real.shape[0], (batch,), generator=g, device="cuda")]
            out.append(rows.float().contiguous())
        else:
            scale = 1.0 if dist == "normal1" else 5.0
            out.append(torch.randn(batch, vocab, device="cuda", generator=g) * scale)
    return out


# --- providers ---------------------------------------------------------------------

def torch_sort_path(x, from_logits, k=None, p=None, min_p=None):
    """vLLM's forward_native, the fallback engines use without FlashInfer."""
    probs = torch.softmax(x, dim=-1) if from_logits else x / x.sum(dim=-1, keepdim=True)
    if min_p is not None:
        probs = probs.masked_fill(probs < min_p * probs.amax(dim=-1, keepdim=True), 0.0)
    if k is not None or p is not None:
        srt, idx = probs.sort(dim=-1, descending=False)
        if k is not None:
            srt = srt.masked_fill(srt < srt[:, -k:-k + 1 if k > 1 else None][:, :1], 0.0)
        if p is not None:
            cum = srt.cumsum(dim=-1)
            drop = cum <= (1 - p) * cum[:, -1:]
            drop[:, -1] = False
            srt = srt.masked_fill(drop, 0.0)
        probs = torch.empty_like(probs).scatter_(-1, idx, srt)
    q = torch.empty_like(probs).exponential_()
    return (probs / q).argmax(dim=-1)


def op_spec(op):
    """(from_logits, k, p, min_p, order) of each op."""
    return {
        "top_p_0.9": (False, None, 0.9, None), "top_p_0.5": (False, None, 0.5, None),
        "top_k_50": (False, 50, None, None), "top_k_1000": (False, 1000, None, None),
        "min_p_0.1": (False, None, None, 0.1), "joint_probs": (False, 50, 0.9, None),
        "joint_logits": (True, 50, 0.9, None), "plain": (False, None, None, None),
    }[op]


def provider_fns(op, flashinfer):
    import tokensampler as ts

    from_logits, k, p, mp = op_spec(op)
    fns = {}

    def ts_fn(x, seed, offset):
        if op == "joint_logits":
            return ts.top_k_top_p_sampling_from_logits(x, k, p, seed=seed, offset=offset)
        if k is not None and p is not None:
            return ts.top_k_top_p_sampling_from_probs(x, k, p, seed=seed, offset=offset)
        if p is not None:
            return ts.top_p_sampling_from_probs(x, p, seed=seed, offset=offset)
        if k is not None:
            return ts.top_k_sampling_from_probs(x, k, seed=seed, offset=offset)
        if mp is not None:
            return ts.min_p_sampling_from_probs(x, mp, seed=seed, offset=offset)
        return ts.sampling_from_probs(x, seed=seed, offset=offset)

    fns["tokensampler"] = ts_fn
    if flashinfer is not None:
        import inspect

        fs = flashinfer.sampling
        # seed/offset arrived after 0.5.3; without them FlashInfer draws from
        # torch's generator, as engines using it do.
        takes_seed = "seed" in inspect.signature(fs.sampling_from_probs).parameters

        def fi_fn(x, seed, offset):
            kw = dict(seed=seed, offset=offset) if takes_seed else {}
            return _fi_call(x, **kw)

        def _fi_call(x, **kw):
            if op == "joint_logits":
                return fs.top_k_top_p_sampling_from_logits(x, k, p, **kw)
            if k is not None and p is not None:
                return fs.top_k_top_p_sampling_from_probs(x, k, p, **kw)
            if p is not None:
                return fs.top_p_sampling_from_probs(x, p, **kw)
            if k is not None:
                return fs.top_k_sampling_from_probs(x, k, **kw)
            if mp is not None:
                return fs.min_p_sampling_from_probs(x, mp, **kw)
            return fs.sampling_from_probs(x, **kw)

        fns["flashinfer"] = fi_fn
    fns["torch_sort"] = lambda x, seed, offset: torch_sort_path(x, from_logits, k, p, mp)
    if op == "plain":
        fns["multinomial"] = lambda x, seed, offset: torch.multinomial(x, 1)
    fns["floor"] = lambda x, seed, offset: torch.amax(x, dim=1)
    return fns


# --- timing ------------------------------------------------------------------------

def time_eager(fn, inputs, seed_t, offset_t):
    import triton

    state = {"i": 0}

    def call():
        state["i"] += 1
        return fn(inputs[state["i"] % len(inputs)], seed_t, offset_t)

    return triton.testing.do_bench(call, warmup=20, rep=80, return_mode="median") * 1e3


def time_graph(fn, inputs, seed_t, offset_t):
    """Replay time of a CUDA graph holding one call (new inputs copied in place)."""
    import triton

    static = inputs[0].clone()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            fn(static, seed_t, offset_t)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn(static, seed_t, offset_t)
    return triton.testing.do_bench(graph.replay, warmup=20, rep=80, return_mode="median") * 1e3


def versions(flashinfer):
    import triton

    import tokensampler

    return {
        "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
        "triton": triton.__version__, "tokensampler": tokensampler.__version__,
        "flashinfer": getattr(flashinfer, "__version__", "not available"),
        "python": platform.python_version(),
    }


def run(cases, real, out_dir, progress=True):
    try:
        import flashinfer
        import flashinfer.sampling  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure means "not measured"
        print(f"flashinfer not measured: {type(e).__name__}: {e}", file=sys.stderr)
        flashinfer = None
    meta = versions(flashinfer)
    rows = []
    try:
        from tqdm import tqdm
        it = tqdm(cases, desc="bench", disable=not progress, file=sys.stderr)
    except ImportError:
        it = cases
    # A run stopped by `timeout` (SIGTERM) or Ctrl-C still writes what it measured.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        _measure(it, flashinfer, meta, real, rows, out_dir)
    except KeyboardInterrupt:
        print(f"stopped early: {len(rows)} rows measured", file=sys.stderr)
    write(rows, meta, out_dir)
    return rows


def _measure(it, flashinfer, meta, real, rows, out_dir):
    for case in it:
        from_logits = op_spec(case.op)[0]
        elems = case.batch * case.vocab
        copies = max(1, min(4, (256 << 20) // (elems * 4)))
        logits = make_logits(case.dist, case.batch, case.vocab, real, copies)
        inputs = logits if from_logits else [torch.softmax(l, dim=1) for l in logits]
        vocab = inputs[0].shape[1]
        bytes_read = elems * 4 if case.dist != "real" else case.batch * vocab * 4
        seed_t = torch.tensor([1], device="cuda")
        offset_t = torch.tensor([0], device="cuda")
        for name, fn in provider_fns(case.op, flashinfer).items():
            row = dict(op=case.op, dist=case.dist, vocab=vocab, batch=case.batch, provider=name,
                       **meta)
            try:
                row["median_us"] = time_eager(fn, inputs, seed_t, offset_t)
                if case.batch in GRAPH_BATCHES and name != "floor":
                    row["graph_us"] = time_graph(fn, inputs, seed_t, offset_t)
            except Exception as e:  # noqa: BLE001 - record and keep going
                row["error"] = f"{type(e).__name__}: {str(e)[:120]}"
            if "median_us" in row:
                row["gbps"] = bytes_read / row["median_us"] / 1e3
            rows.append(row)
        del logits, inputs
        torch.cuda.empty_cache()
        # Every cell lands on disk at once: a run killed outright (not just
        # interrupted, which writes everything below) keeps what it measured.
        write(rows, meta, out_dir, final=False)


def write(rows, meta, out_dir, final=True):
    """results.csv and results.md; with ``final``, also the plot and the table on stdout."""
    os.makedirs(out_dir, exist_ok=True)
    keys = ["op", "dist", "vocab", "batch", "provider", "median_us", "graph_us", "gbps",
            "error", "gpu", "torch", "triton", "flashinfer", "tokensampler", "python"]
    with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    cells = {}
    for r in rows:
        cells.setdefault((r["op"], r["dist"], r["vocab"], r["batch"]), {})[r["provider"]] = r
    provs = [p for p in ("tokensampler", "flashinfer", "torch_sort", "multinomial", "floor")
             if any(p in c for c in cells.values())]
    lines = [f"Card: {meta['gpu']}; torch {meta['torch']}, triton {meta['triton']}, "
             f"flashinfer {meta['flashinfer']}, tokensampler {meta['tokensampler']}. "
             "Median µs (CUDA events); `ts/fi` = tokensampler time over FlashInfer's; "
             "`floor×` = tokensampler time over one read of the input.", "",
             "| op | dist | V | B | " + " | ".join(provs) + " | ts/fi | floor× | graph ts | graph fi |",
             "|" + "---|" * (len(provs) + 8)]
    ratios = []
    fmt = lambda v, spec=".1f": format(v, spec) if v else "-"  # noqa: E731
    for (op, dist, vocab, batch), c in sorted(cells.items()):
        def us(p, key="median_us"):
            return c.get(p, {}).get(key)
        ts_, fi, fl = us("tokensampler"), us("flashinfer"), us("floor")
        ratio = ts_ / fi if ts_ and fi else None
        if ratio:
            ratios.append(ratio)
        cols = [fmt(us(p)) for p in provs] + [
            fmt(ratio, ".2f"), fmt(ts_ / fl if ts_ and fl else None, ".2f"),
            fmt(us("tokensampler", "graph_us")), fmt(us("flashinfer", "graph_us"))]
        lines.append(f"| {op} | {dist} | {vocab} | {batch} | " + " | ".join(cols) + " |")
    if ratios:
        import math
        gm = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        lines += ["", f"Geometric-mean ts/fi over {len(ratios)} cells: {gm:.3f}; "
                  f"cells slower than FlashInfer: {sum(r > 1 for r in ratios)}."]
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if final:
        plot(rows, meta, os.path.join(out_dir, "latency.png"))
        print("\n".join(lines))


def plot(rows, meta, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)
        return
    ops = sorted({r["op"] for r in rows})
    dist = "normal1" if any(r["dist"] == "normal1" for r in rows) else rows[0]["dist"]
    vocab = max(r["vocab"] for r in rows if r["dist"] == dist)
    fig, axes = plt.subplots(2, (len(ops) + 1) // 2, figsize=(4 * ((len(ops) + 1) // 2), 7),
                             squeeze=False)
    for ax, op in zip(axes.flat, ops):
        for color, prov in enumerate(("tokensampler", "flashinfer", "torch_sort", "multinomial",
                                      "floor")):
            pts = sorted((r["batch"], r["median_us"]) for r in rows if r["op"] == op
                         and r["provider"] == prov and r["vocab"] == vocab
                         and r["dist"] == dist and "median_us" in r)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=prov, color=f"C{color}")  # same in every panel
        ax.set(title=f"{op}, V={vocab}", xscale="log", yscale="log", xlabel="batch",
               ylabel="µs")
    handles = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles),
               fontsize=8)
    fig.suptitle(f"{meta['gpu']}: torch {meta['torch']}, triton {meta['triton']}, "
                 f"flashinfer {meta['flashinfer']}", fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench-out")
    ap.add_argument("--vocab", type=int, nargs="*", default=list(VOCABS))
    ap.add_argument("--batch", type=int, nargs="*", default=list(BATCHES))
    ap.add_argument("--ops", nargs="*", default=list(OPS))
    ap.add_argument("--dists", nargs="*", default=["normal1", "normal5"])
    ap.add_argument("--real", default=None, help="real logits (.pt, (rows, V)) for dist 'real'")
    args = ap.parse_args(argv)
    real = torch.load(args.real).cuda() if args.real else None
    # Distribution-major: a run cut short still has whole grids for the first ones.
    cases = [Case(op, dist, v, b) for dist in args.dists for op in args.ops
             for v in ((real.shape[1],) if dist == "real" else args.vocab) for b in args.batch]
    run(cases, real, args.out)


if __name__ == "__main__":
    main()
