"""Every op once through the Triton kernels, for compute-sanitizer's racecheck.

The GPU suite also runs the reference backend, whose PyTorch reductions
racecheck reports (in PyTorch's own kernels); this script launches only the
inputs' set-up and tokensampler's kernels, at vocabularies that take every
path (one chunk; several chunks with the top-p bracket; the largest row):

    compute-sanitizer --tool racecheck python3 tests/sanitize_ops.py [V ...] [--fp32]

Arguments pick the vocabularies (default: all three) and ``--fp32`` drops
bfloat16, so that one slow sanitizer run can cover the largest row alone.
``--split`` makes top-p's round-0 draws in ``draw_kernel`` (as shipped),
and runs every op twice: round 0's four draws checked in one launch (as
shipped up to FUSE_ROWS["round0"] outputs) and draw 0 checked alone first
(above; the threshold lowered to 0 here). Without it the draws run in the
stats launch's tail (``FUSE_ROWS["draws"]`` raised past the batch), so the
two runs cover every form.
Each vocabulary also has per-request top-k calls with top-k off in some
rows (their rejection rounds after the top-k launches, or without top-p
select_row's race from the stats).
"""

import sys

import torch

import tokensampler as ts
import tokensampler.triton as tt
from tokensampler.ops import OPS, call_op, example_inputs

# Top-p's round-0 draws: in a launch of their own (--split, as shipped since
# FUSE_ROWS["draws"] became 0), checked at once or draw 0 first, or in the
# stats launch's tail (the other form, which a run without --split covers).
# (The twentieth session's sanitizer runs had four draws at once only: the
# batch of 4 is below FUSE_ROWS["round0"].)
ALL = 1 << 30
forms = ([{"draws": 0, "round0": ALL}, {"draws": 0, "round0": 0}] if "--split" in sys.argv
         else [{"draws": ALL, "round0": ALL}])
vocabs = [int(a) for a in sys.argv[1:] if not a.startswith("--")] or [1000, 5000, 151936]
dtypes = [torch.float32] if "--fp32" in sys.argv else [torch.float32, torch.bfloat16]
for vocab, dtype, form in ((v, d, f) for v in vocabs for d in dtypes for f in forms):
    tt.FUSE_ROWS = {**tt.FUSE_ROWS, **form}
    logits, probs = example_inputs(vocab, 4, dtype, "cuda", seed=vocab)
    torch.cuda.synchronize()
    for name in OPS:
        for per_row in (False, True):
            call_op(name, logits, probs, per_row, backend="triton")
    k = torch.tensor([0, 50, vocab, 3], device="cuda")
    p = torch.tensor([0.9, 0.9, 0.5, 0.7], device="cuda")
    for x, fn in ((probs, ts.top_k_top_p_sampling_from_probs),
                  (logits, ts.top_k_top_p_sampling_from_logits)):
        fn(x, k, p, seed=torch.arange(4, device="cuda"), backend="triton")
    # Without top-p those rows have no filter left (select_row's race).
    ts.top_k_sampling_from_probs(probs, k, seed=torch.arange(4, device="cuda"),
                                 backend="triton")
    torch.cuda.synchronize()
    print(f"V={vocab} {dtype} {form}: {len(OPS) * 2 + 3} calls", flush=True)
