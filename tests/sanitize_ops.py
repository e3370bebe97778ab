"""Every op once through the Triton kernels, for compute-sanitizer's racecheck.

The GPU suite also runs the reference backend, whose PyTorch reductions
racecheck reports (in PyTorch's own kernels); this script launches only the
inputs' set-up and tokensampler's kernels, at vocabularies that take every
path (one chunk; several chunks with the top-p bracket; the largest row):

    compute-sanitizer --tool racecheck python3 tests/sanitize_ops.py [V ...] [--fp32]

Arguments pick the vocabularies (default: all three) and ``--fp32`` drops
bfloat16, so that one slow sanitizer run can cover the largest row alone.
``--split`` makes top-p's round-0 draws in ``draw_kernel`` (as shipped);
without it they run in the stats launch's tail (``FUSE_ROWS["draws"]``
raised past the batch), so the two runs cover both forms.
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
# FUSE_ROWS["draws"] became 0) or in the stats launch's tail (the other form,
# which a run without --split covers).
tt.FUSE_ROWS = {**tt.FUSE_ROWS, "draws": 0 if "--split" in sys.argv else 1 << 30}
vocabs = [int(a) for a in sys.argv[1:] if not a.startswith("--")] or [1000, 5000, 151936]
dtypes = [torch.float32] if "--fp32" in sys.argv else [torch.float32, torch.bfloat16]
for vocab in vocabs:
    for dtype in dtypes:
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
        print(f"V={vocab} {dtype}: {len(OPS) * 2 + 3} calls", flush=True)
