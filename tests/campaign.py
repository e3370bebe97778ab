"""The hostile-row campaign at scale (issue 4, section 4), for the GPU.

Every sampler gets batches from tests/adversarial.py (good rows at even
positions, one hostile kind at odd ones) with per-row parameters drawn from
the extremes (top_p 0 and 1, top_k 1, V and V + 1, min_p 0 and 1,
temperature 0, 1e-30 and 1e30) and ordinary values, and per-row seeds. Each
call runs under the watchdog. For every row it counts:

* ``hangs``: calls that hit the watchdog's timeout (the campaign stops);
* ``errors``: exceptions of any kind (none is expected: every argument is legal);
* ``out_of_range``: ids outside [0, V);
* ``wrong_valid``: ``valid`` differing from the reference backend's, which the
  CPU campaign checks against the brute-force specification;
* ``outside_kept``: a valid row whose token is not in its kept set, computed
  in float64 by the reference's own rules;
* ``leaked``: a good row whose token changes when it is sampled without its
  hostile neighbours (same parameters and seed);
* ``disagree``: valid rows where the kernels and the reference pick different
  tokens (allowed within float32 rounding of a boundary: docs/semantics.md).

Usage (the device machine)::

    python tests/campaign.py --rows 1000000 --json campaign.json

``--rows`` is the number of hostile rows per sampler.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict

import torch

import tokensampler as ts
from adversarial import KINDS, hostile_batch
from tokensampler.reference.filters import expand, kept, weights

SAMPLERS = {
    "probs": (ts.sampling_from_probs, False, ()),
    "logits": (ts.sampling_from_logits, True, ("temperature",)),
    "top_p": (ts.top_p_sampling_from_probs, False, ("top_p",)),
    "top_k": (ts.top_k_sampling_from_probs, False, ("top_k",)),
    "min_p": (ts.min_p_sampling_from_probs, False, ("min_p",)),
    "kp_first": (ts.top_k_top_p_sampling_from_probs, False, ("top_k", "top_p")),
    "kp_joint": (ts.top_k_top_p_sampling_from_probs, False, ("top_k", "top_p")),
    "logits_kp": (ts.top_k_top_p_sampling_from_logits, True, ("top_k", "top_p", "temperature")),
}
# The greedy logits sampler of the CPU campaign is covered by temperature 0 rows.
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
EXAMPLES: list = []   # disagreements, as dicts (the first few of each batch)
COUNTS = ("rows", "hostile_rows", "hangs", "errors", "out_of_range", "wrong_valid",
          "outside_kept", "leaked", "disagree")


class Stop(Exception):
    """A call hung: the GPU is no longer trustworthy, so the campaign ends
    there and reports what it counted, the hang included."""


def row_params(names, n, V, g, device):
    """Per-row parameters: extremes and ordinary values, mixed."""
    def pick(values):
        table = torch.tensor(values, device=device)
        return table[torch.randint(0, len(values), (n,), generator=g, device=device)]
    out = {}
    if "top_k" in names:
        out["top_k"] = pick([1, 2, 5, 50, V, V + 1, 0, max(1, V // 2)]).long()
    if "top_p" in names:
        out["top_p"] = pick([0.0, 1e-6, 0.5, 0.9, 0.999, 1.0]).float()
    if "min_p" in names:
        out["min_p"] = pick([0.0, 0.1, 0.5, 1.0]).float()
    if "temperature" in names:
        out["temperature"] = pick([0.0, 1e-30, 0.7, 1.0, 1e30]).float()
    return out


def kept_mask(x, from_logits, params, joint):
    """Float64 kept set of every row, by the reference's rules."""
    n = x.shape[0]
    rows = torch.arange(n, device=x.device)
    col = lambda name, dtype: expand(params.get(name), rows, dtype, x.device)
    w, ok, order_key, greedy = weights(x, from_logits, col("temperature", torch.float64)
                                       if from_logits else None)
    keep = kept(w, order_key, col("top_k", torch.int64), col("top_p", torch.float64),
                col("min_p", torch.float64), joint)
    return keep & (w > 0), ok


def check(name, kind, V, B, seed, dtype, device, timeout_s, counts):
    fn, from_logits, names = SAMPLERS[name]
    joint = name == "kp_joint"
    x = hostile_batch(kind, V, B, seed, from_logits, dtype, device)
    g = torch.Generator(device=device).manual_seed(seed + 1)
    params = row_params(names, B, V, g, device)
    extra = dict(filter_apply_order="joint") if joint else {}
    seeds = torch.randint(0, 2**62, (B,), generator=g, device=device)
    c = counts[(name, kind)]
    c["rows"] += B
    c["hostile_rows"] += B // 2 if kind != "good" else 0

    def call(xs, ps, ss, backend):
        return fn(xs, **ps, **extra, seed=ss, return_valid=True, backend=backend,
                  timeout_s=timeout_s)
    try:
        out, valid = call(x, params, seeds, "triton")
        ref, ref_valid = call(x, params, seeds, "reference")
        even = slice(0, None, 2)
        alone, _ = call(x[even].contiguous(), {k: v[even] for k, v in params.items()},
                        seeds[even], "triton")
    except ts.SamplingTimeoutError as exc:
        c["hangs"] += 1
        raise Stop(f"{name}/{kind}/V={V}/{dtype}: {exc}") from exc
    except Exception as exc:   # counted and shown: no exception is expected
        c["errors"] += 1
        print(f"error in {name}/{kind}/V={V}/{dtype}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return
    keep, _ = kept_mask(x, from_logits, params, joint)
    in_range = (out >= 0) & (out < V)
    c["out_of_range"] += int((~in_range).sum())
    c["wrong_valid"] += int((valid != ref_valid).sum())
    tok = out.long().clamp(0, V - 1)
    inside = keep.gather(1, tok.unsqueeze(1)).squeeze(1)
    c["outside_kept"] += int((valid & ~inside).sum())
    c["leaked"] += int((alone != out[even]).sum())
    differ = valid & ref_valid & (out != ref)
    c["disagree"] += int(differ.sum())
    for i in differ.nonzero().flatten().tolist()[:3]:   # a few examples, to judge them
        w, _, _, _ = weights(x[i:i + 1], from_logits, expand(
            params.get("temperature"), torch.tensor([i], device=device), torch.float64, device)
            if from_logits else None)
        total = float(w.sum())
        EXAMPLES.append(dict(sampler=name, kind=kind, V=V, dtype=str(dtype), row=i,
                             params={k: float(v[i]) for k, v in params.items()},
                             triton=int(out[i]), reference=int(ref[i]),
                             w_triton=float(w[0, out[i]]) / total,
                             w_reference=float(w[0, ref[i]]) / total))


# Vocabulary sizes and their share of the rows: 4100 (two chunks of the
# two-stage race) costs four times 1000 a row, so it gets a quarter of the rows.
VOCABS = {1: 1.0, 2: 1.0, 37: 1.0, 1000: 1.0, 4100: 0.25}


def run(rows_per_sampler: int, vocabs=VOCABS, device="cuda",
        timeout_s: float = 120.0, samplers=tuple(SAMPLERS), progress=True,
        after_sampler=None) -> dict:
    """Run the campaign; returns {'counts': {(sampler, kind): {...}}, 'seconds': ...}.
    ``after_sampler(partial_result)`` is called as each sampler finishes."""
    hostile_kinds = [k for k in KINDS if k != "good"]
    shares = vocabs if isinstance(vocabs, dict) else dict.fromkeys(vocabs, 1.0)
    combos = [(kind, V) for kind in hostile_kinds for V in shares]
    unit = rows_per_sampler / len(hostile_kinds) / sum(shares.values())
    counts = defaultdict(lambda: dict.fromkeys(COUNTS, 0))
    start = time.monotonic()
    stopped = None
    for s, name in enumerate(samplers):
        for i, (kind, V) in enumerate(combos):
            dtype = DTYPES[i % len(DTYPES)]
            per_batch = max(2, 2 * math.ceil(unit * shares[V]))   # half the rows are hostile
            B = max(2, min(per_batch, (1 << 27) // V // 2 * 2))   # bounded memory
            done = 0
            while done < per_batch and stopped is None:
                try:
                    check(name, kind, V, B, seed=1000 * s + i + done, dtype=dtype,
                          device=device, timeout_s=timeout_s, counts=counts)
                except Stop as stop:
                    stopped = str(stop)
                    print(f"stopped: {stopped}", file=sys.stderr, flush=True)
                done += B
        if progress:
            total = sum(c["hostile_rows"] for (n, _), c in counts.items() if n == name)
            print(f"{name}: {total} hostile rows, {time.monotonic() - start:.0f} s",
                  file=sys.stderr, flush=True)
        if after_sampler:
            after_sampler({"counts": dict(counts), "seconds": time.monotonic() - start,
                           "stopped": stopped})
        if stopped:
            break
    return {"counts": dict(counts), "seconds": time.monotonic() - start, "stopped": stopped}


def summary(result: dict) -> dict:
    """Totals per sampler and per kind, and over everything."""
    by_sampler, by_kind = defaultdict(lambda: dict.fromkeys(COUNTS, 0)), \
        defaultdict(lambda: dict.fromkeys(COUNTS, 0))
    for (name, kind), c in result["counts"].items():
        for key, value in c.items():
            by_sampler[name][key] += value
            by_kind[kind][key] += value
    total = {key: sum(c[key] for c in by_sampler.values()) for key in COUNTS}
    return {"total": total, "by_sampler": dict(by_sampler), "by_kind": dict(by_kind),
            "seconds": round(result["seconds"], 1), "stopped": result.get("stopped"),
            "disagreements": EXAMPLES[:50]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="hostile rows per sampler (default 10**6)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--timeout", type=float, default=120.0, help="watchdog seconds a call")
    parser.add_argument("--json", default=None, help="write the summary here")
    parser.add_argument("--samplers", default=",".join(SAMPLERS),
                        help=f"comma-separated subset of {', '.join(SAMPLERS)}")
    args = parser.parse_args()
    device = (torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device)

    def save(result):   # after every sampler, so a run cut short still leaves counts
        report = summary(result)
        report.update(device=device, torch=torch.__version__, rows_per_sampler=args.rows,
                      samplers=args.samplers.split(","))
        if args.json:
            with open(args.json, "w") as f:
                f.write(json.dumps(report, indent=1))
        return report

    report = save(run(args.rows, device=args.device, timeout_s=args.timeout,
                      samplers=args.samplers.split(","), after_sampler=save))
    print(json.dumps(report["total"]))
    bad = sum(report["total"][k] for k in ("hangs", "errors", "out_of_range", "wrong_valid",
                                           "outside_kept", "leaked"))
    return int(bad > 0)


if __name__ == "__main__":
    sys.exit(main())
