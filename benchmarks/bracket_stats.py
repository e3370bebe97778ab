"""How top-p alone narrows its bracket: histogram passes used and rows that
overflow the candidate buffer (and so take the slow single-program path).

    python benchmarks/bracket_stats.py [--rows 256] [--real .data/smollm2_logits.pt]

For each input kind, top-p value and vocabulary it prints the share of rows
that needed 1, 2, ... histogram passes and the share that overflowed. Runs on
any device the Triton backend runs on (a GPU, or the interpreter on CPU).
The bracket serves top-p alone where per-row steps do not fuse (ROCm); this
selects it everywhere (``triton._FUSE_OK``): elsewhere top-p alone draws by
rejection, with no passes to count.
"""

from __future__ import annotations

import argparse

import torch

import tokensampler as ts
import tokensampler.triton as tt


def _logits(kind: str, rows: int, vocab: int, device, real):
    g = torch.Generator(device="cpu").manual_seed(vocab)
    if kind == "real":
        if real is None:
            return None
        pick = torch.randint(0, real.shape[0], (rows,), generator=g)
        return real[pick].float().to(device)
    scale = {"normal1": 1.0, "normal3": 3.0, "normal5": 5.0}[kind]
    return (torch.randn(rows, vocab, generator=g) * scale).to(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--vocab", type=int, nargs="*", default=[32000, 128256, 262144])
    ap.add_argument("--p", type=float, nargs="*", default=[0.5, 0.9, 0.95, 0.99, 0.999])
    ap.add_argument("--real", default=None)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    real = torch.load(args.real) if args.real else None
    seen = []
    tt.inspect = seen.append
    tt._FUSE_OK = False
    print(f"{'input':8} {'from':6} {'V':>7} {'p':>6}  passes used (share of rows)          overflow")
    for kind in ("normal1", "normal3", "normal5", "real"):
        for vocab in ([real.shape[1]] if kind == "real" and real is not None else args.vocab):
            logits = _logits(kind, args.rows, vocab, args.device, real)
            if logits is None:
                continue
            for from_logits in (False, True):
                x = logits if from_logits else torch.softmax(logits, dim=1)
                for p in args.p:
                    seen.clear()
                    if from_logits:
                        ts.top_k_top_p_sampling_from_logits(x, None, p, seed=1, backend="triton")
                    else:
                        ts.top_p_sampling_from_probs(x, p, seed=1, backend="triton")
                    ws = seen[-1]
                    used = ws.passes.cpu()
                    share = [f"{(used == q).float().mean().item():6.1%}"
                             for q in range(tt.HIST_PASSES + 1)]
                    over = (ws.count.cpu() > ws.cap).float().mean().item()
                    print(f"{kind:8} {'logits' if from_logits else 'probs':6} {vocab:7d} {p:6.3f}  "
                          f"{' '.join(share)}   {over:6.2%}", flush=True)


if __name__ == "__main__":
    main()
