"""Hostile batches for the samplers (issue 4, section 4).

A batch mixes good rows with rows of one hostile kind, so that every check
can also ask whether a bad row leaks into its neighbours. The generator
imports torch only; what a row *should* give comes from tests/bruteforce.py,
which is written from the specification.

Kinds (``KINDS``), each a function ``(n, V, generator) -> rows`` of float64
values on the generator's device (rounded to the batch dtype by the caller),
so that the GPU campaign (tests/campaign.py) makes its batches on the GPU:

* invalid for probs and logits: ``nan``, ``pos_inf``;
* invalid for probs only: ``neg_inf`` (negative weight), ``negative``,
  ``all_zero`` (logits of all zero are a uniform row);
* invalid for logits only: ``all_neg_inf``;
* valid: ``denormal``, ``huge``, ``tiny``, ``ties``, ``one_hot``, ``uniform``,
  ``mask_50``, ``mask_99``, ``mask_999`` (-inf, or 0 for probs, over that
  fraction of the row), ``good``.
"""

from __future__ import annotations

import torch

F32_TINY = 1.401298464324817e-45   # smallest float32 denormal
MASKED = float("-inf")   # replaced by 0 for probs batches (see hostile_batch)


def _good(n, V, g):
    return torch.rand(n, V, generator=g, device=g.device, dtype=torch.float64) * 4 + 0.01


def _one_per_row(n, V, g):
    """(rows, columns) of one random entry in each of n rows."""
    return (torch.arange(n, device=g.device),
            torch.randint(0, V, (n,), generator=g, device=g.device))


def _masked(frac):
    def make(n, V, g):
        rows = _good(n, V, g)
        drop = torch.rand(n, V, generator=g, device=g.device) < frac
        drop[_one_per_row(n, V, g)] = False   # at least one survives
        return rows.masked_fill(drop, MASKED)
    return make


def _poison(value):
    def make(n, V, g):
        rows = _good(n, V, g)
        rows[_one_per_row(n, V, g)] = value
        return rows
    return make


def _full(value):
    return lambda n, V, g: torch.full((n, V), value, dtype=torch.float64, device=g.device)


def _one_hot(n, V, g):
    rows = _full(0.0)(n, V, g)
    rows[_one_per_row(n, V, g)] = 1.0
    return rows


# Each kind makes n rows of V float64 values on the generator's device.
KINDS = {
    "good": _good,
    "nan": _poison(float("nan")),
    "pos_inf": _poison(float("inf")),
    "neg_inf": _poison(float("-inf")),
    "negative": _poison(-0.5),
    "all_neg_inf": _full(float("-inf")),
    "all_zero": _full(0.0),
    "denormal": lambda n, V, g: torch.randint(
        1, 8, (n, V), generator=g, device=g.device).double() * F32_TINY,
    "huge": lambda n, V, g: _good(n, V, g) * 1e37,
    "tiny": lambda n, V, g: _good(n, V, g) * 1e-37,
    "ties": lambda n, V, g: torch.randint(0, 3, (n, V), generator=g, device=g.device).double() + 1,
    "one_hot": _one_hot,
    "uniform": _full(1.0),
    "mask_50": _masked(0.5),
    "mask_99": _masked(0.99),
    "mask_999": _masked(0.999),
}


def hostile_batch(kind: str, V: int, B: int, seed: int, from_logits: bool,
                  dtype=torch.float32, device="cpu") -> torch.Tensor:
    """``B`` rows: odd positions of ``kind``, even positions good rows.

    For probs batches, masked entries are 0 instead of -inf (a masked
    probability), and ``huge`` stays finite in the dtype (float16 saturates:
    its rows scale to 1.5e4 times the good rows instead of 1e37).
    """
    g = torch.Generator(device=device).manual_seed(seed)
    x = _good(B, V, g)
    hostile = KINDS[kind](B // 2, V, g)
    if not from_logits and kind.startswith("mask"):
        hostile = hostile.masked_fill(hostile == MASKED, 0.0)
    if dtype == torch.float16 and kind == "huge":
        hostile = hostile / 1e37 * 1.5e4
    x[1::2] = hostile
    return x.to(dtype)
