"""Shared test helpers (one place, so test files don't drift apart)."""

from __future__ import annotations

import torch

from tokensampler import dispatch


def available_backends() -> list[str]:
    names = ["reference"]
    if dispatch.triton_status(torch.device("cpu"))[0]:
        names.append("triton")
    return names


def drawn_set(fn, x, *args, n=4000, seed=1234, **kw) -> set[int]:
    """Tokens drawn by ``n`` independent outputs of row 0 of ``x``.

    With V <= 16 and every kept probability >= 1/64, missing a kept token has
    probability below 16 * (63/64)**4000 < 1e-26: the drawn set is the kept set.
    """
    idx = torch.zeros(n, dtype=torch.int64, device=x.device)
    out = fn(x, *args, indices=idx, seed=seed, **kw)
    return set(out.tolist())


def row(*values, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor([values], dtype=dtype)
