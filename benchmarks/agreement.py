"""Token-for-token agreement of the Triton kernels with the reference, over >= 10**6 rows.

Both backends run on the GPU on the same inputs, parameters and per-row seeds.
Every sampler is exercised with per-row parameters that hit the edges. A
disagreement is only legitimate at a float32 rounding boundary (docs/semantics.md
section 4): the script prints each one with the weights of both tokens so that
can be judged.

    python benchmarks/agreement.py --rows 1000000
"""

import argparse
import sys
import time

import torch

sys.path.insert(0, "tests")
from test_triton import SAMPLERS  # noqa: E402  (the test suite's sampler table)


def batch_inputs(batch, vocab, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    scale = torch.rand(batch, 1, generator=g, device="cuda") * 6
    logits = (torch.randn(batch, vocab, generator=g, device="cuda") * scale).to(torch.bfloat16).float()
    logits = logits.masked_fill(torch.rand(batch, vocab, generator=g, device="cuda") < 0.1,
                                -float("inf"))
    logits[:, 0] = 0.0
    k = torch.randint(0, 2000, (batch,), generator=g, device="cuda")
    p = torch.rand(batch, generator=g, device="cuda")
    m = torch.rand(batch, generator=g, device="cuda") * 0.3
    t = torch.rand(batch, generator=g, device="cuda") * 1.5
    return logits, torch.softmax(logits, dim=1), (k, p, m, t)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--vocab", type=int, nargs="*", default=[32000, 128256])
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--ops", nargs="*", default=list(SAMPLERS), choices=list(SAMPLERS))
    args = ap.parse_args(argv)
    names = list(args.ops)
    total = mismatched = 0
    examples = []
    per_op = {n: [0, 0] for n in names}
    start = time.time()
    step = 0
    while total < args.rows:
        vocab = args.vocab[step % len(args.vocab)]
        batch = args.batch if vocab <= 32000 else args.batch // 4
        name = names[step % len(names)]
        logits, probs, params = batch_inputs(batch, vocab, step)
        seeds = dict(seed=torch.arange(batch, device="cuda") + step * batch,
                     offset=torch.full((batch,), step, device="cuda"))
        fn = SAMPLERS[name]
        ref, rv = fn(logits, probs, *params, return_valid=True, backend="reference", **seeds)
        got, gv = fn(logits, probs, *params, return_valid=True, backend="triton", **seeds)
        assert torch.equal(rv, gv), f"valid flags differ in {name}"
        diff = (ref != got).nonzero().flatten()
        total += batch
        mismatched += diff.numel()
        per_op[name][0] += batch
        per_op[name][1] += diff.numel()
        for i in diff[:3].tolist():
            x = probs[i]
            examples.append(f"{name} V={vocab} row {i}: reference {int(ref[i])} "
                            f"(p={float(x[ref[i]]):.4g}), triton {int(got[i])} "
                            f"(p={float(x[got[i]]):.4g}), k={int(params[0][i])} "
                            f"top_p={float(params[1][i]):.4g} T={float(params[3][i]):.4g}")
        step += 1
        if step % 20 == 0:
            print(f"  {total} rows, {mismatched} disagreements, {time.time() - start:.0f} s",
                  flush=True)
    rate = 1 - mismatched / total
    print(f"{torch.cuda.get_device_name()}: {total} rows, {mismatched} disagreements, "
          f"agreement {rate * 100:.5f}% ({time.time() - start:.0f} s)")
    for n, (t_, m_) in per_op.items():
        print(f"  {n:<16} {t_:>8} rows  {m_:>4} disagree")
    for e in examples[:30]:
        print("  " + e)
    return 0 if rate >= 0.9999 else 1


if __name__ == "__main__":
    sys.exit(main())
