"""Weights, validity and kept sets, exactly as docs/semantics.md defines them.

Everything here works on a chunk of rows in float64: the conversion of
float32/float16/bfloat16 inputs is exact, and so is every prefix mass of
dyadic weights, which the hand-made tests rely on.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..params import Param


def expand(param: Param, rows: torch.Tensor, dtype, device) -> Optional[torch.Tensor]:
    """A scalar or per-output parameter as a column ``(n, 1)``; None stays None.

    ``rows`` selects the outputs of this chunk (per-output tensors are indexed
    by output position, like FlashInfer's per-request arrays).
    """
    if param is None:
        return None
    if isinstance(param, torch.Tensor):
        return param.to(device)[rows].to(dtype).unsqueeze(1)
    return torch.full((rows.shape[0], 1), param, dtype=dtype, device=device)


def weights(x: torch.Tensor, from_logits: bool, temperature: Optional[torch.Tensor]):
    """Row weights, row validity and the key that orders tokens.

    Returns ``(w, valid, order_key, greedy)``: ``w`` the non-negative float64
    weights (softmax numerators for logits), ``order_key`` a float64 tensor
    whose descending order (ties to the lower index) is the token order, and
    ``greedy`` the rows whose temperature is 0. Invalid rows get ``w = 1`` so
    later arithmetic stays finite; callers overwrite their results.
    """
    x = x.to(torch.float64)
    n = x.shape[0]
    greedy = torch.zeros(n, dtype=torch.bool, device=x.device)
    if not from_logits:
        valid = ~(torch.isnan(x) | torch.isinf(x) | (x < 0)).any(dim=1)
        valid &= torch.where(valid, x.sum(dim=1), 0.0) > 0
        w = torch.where(valid.unsqueeze(1), x, 1.0)
        return w, valid, w, greedy
    valid = ~(torch.isnan(x) | (x == torch.inf)).any(dim=1)
    valid &= (x > -torch.inf).any(dim=1)
    t = temperature
    # An out-of-range per-request temperature on an accelerator reaches here
    # unchecked (see params.py): the row is reported invalid, never used.
    valid &= ~(torch.isnan(t) | (t < 0) | torch.isinf(t)).squeeze(1)
    x = torch.where(valid.unsqueeze(1), x, 0.0)
    t = torch.where(valid.unsqueeze(1), t, 1.0)
    greedy = valid & (t.squeeze(1) == 0)
    m = x.max(dim=1, keepdim=True).values
    z = (x - m) / torch.where(t == 0, 1.0, t)
    w = torch.where(greedy.unsqueeze(1), (x == m).to(torch.float64), torch.exp(z))
    # Exact weights are strictly increasing in the logit, so the logit itself
    # is the exact order key (exp could merge neighbours by rounding).
    return w, valid, x, greedy


def param_valid(k, p, m) -> Optional[torch.Tensor]:
    """Rows whose per-request top_p / min_p value is in range (None: all)."""
    bad = None
    if p is not None:
        bad = torch.isnan(p) | (p < 0) | (p > 1)
    if m is not None:
        bm = torch.isnan(m) | (m > 1)
        bad = bm if bad is None else bad | bm
    return None if bad is None else ~bad.squeeze(1)


def kept(w: torch.Tensor, order_key: torch.Tensor, k: Optional[torch.Tensor],
         p: Optional[torch.Tensor], m: Optional[torch.Tensor], joint: bool) -> torch.Tensor:
    """Boolean mask of the kept tokens of each row.

    ``k`` (int64), ``p`` and ``m`` (float64) are ``(n, 1)`` columns or None.
    top-k keeps the first k of the order (k <= 0 or k >= V: all); top-p the
    tokens whose exclusive prefix mass is below ``p`` times the reference mass
    (the crossing token is kept; p >= 1: all); min-p the tokens with
    ``w >= m * max(w)`` (m <= 0: all). The first token is always kept.
    """
    n, vocab = w.shape
    keep = torch.ones_like(w, dtype=torch.bool)
    if k is not None or p is not None:
        _, perm = torch.sort(order_key, dim=1, descending=True, stable=True)
        ws = w.gather(1, perm)
        pos = torch.arange(vocab, device=w.device).unsqueeze(0)
        keep_sorted = torch.ones_like(ws, dtype=torch.bool)
        if k is not None:
            k_on = (k > 0) & (k < vocab)
            keep_sorted &= ~k_on | (pos < k)
        if p is not None:
            # top_k_first measures top-p on the mass top-k kept; joint on the row.
            wp = ws * keep_sorted if not joint else ws
            inclusive = torch.cumsum(wp, dim=1)
            exclusive = torch.cat([torch.zeros_like(inclusive[:, :1]), inclusive[:, :-1]], dim=1)
            keep_p = (exclusive < p * wp.sum(dim=1, keepdim=True)) | (p >= 1)
            keep_sorted &= keep_p
        keep_sorted[:, 0] = True
        keep = torch.zeros_like(keep).scatter(1, perm, keep_sorted)
    if m is not None:
        keep &= (w >= m * w.max(dim=1, keepdim=True).values) | (m <= 0)
    return keep
