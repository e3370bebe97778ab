"""Hostile batches for the samplers (issue 4, section 4).

A batch mixes good rows with rows of one hostile kind, so that every check
can also ask whether a bad row leaks into its neighbours. The generator
imports torch only; what a row *should* give comes from tests/bruteforce.py,
which is written from the specification.

Kinds (``KINDS``), each a function ``(V, generator) -> row`` of float64 values
(rounded to the batch dtype by the caller):

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


def _good(V, g):
    return torch.rand(V, generator=g, dtype=torch.float64) * 4 + 0.01


def _masked(frac):
    def make(V, g):
        row = _good(V, g)
        drop = torch.rand(V, generator=g) < frac
        drop[torch.randint(0, V, (1,), generator=g)] = False   # at least one survives
        return row.masked_fill(drop, MASKED)
    return make


MASKED = float("-inf")   # replaced by 0 for probs batches (see hostile_batch)


def _poison(value):
    def make(V, g):
        row = _good(V, g)
        row[torch.randint(0, V, (1,), generator=g)] = value
        return row
    return make


KINDS = {
    "good": _good,
    "nan": _poison(float("nan")),
    "pos_inf": _poison(float("inf")),
    "neg_inf": _poison(float("-inf")),
    "negative": _poison(-0.5),
    "all_neg_inf": lambda V, g: torch.full((V,), float("-inf"), dtype=torch.float64),
    "all_zero": lambda V, g: torch.zeros(V, dtype=torch.float64),
    "denormal": lambda V, g: torch.randint(1, 8, (V,), generator=g).double() * F32_TINY,
    "huge": lambda V, g: _good(V, g) * 1e37,
    "tiny": lambda V, g: _good(V, g) * 1e-37,
    "ties": lambda V, g: torch.randint(0, 3, (V,), generator=g).double() + 1.0,
    "one_hot": lambda V, g: torch.zeros(V, dtype=torch.float64).index_fill(
        0, torch.randint(0, V, (1,), generator=g), 1.0),
    "uniform": lambda V, g: torch.ones(V, dtype=torch.float64),
    "mask_50": _masked(0.5),
    "mask_99": _masked(0.99),
    "mask_999": _masked(0.999),
}


def hostile_batch(kind: str, V: int, B: int, seed: int, from_logits: bool,
                  dtype=torch.float32) -> torch.Tensor:
    """``B`` rows: odd positions of ``kind``, even positions good rows.

    For probs batches, masked entries are 0 instead of -inf (a masked
    probability), and ``huge`` stays finite in the dtype (float16 saturates:
    its rows scale to 1.5e4 times the good rows instead of 1e37).
    """
    g = torch.Generator().manual_seed(seed)
    rows = []
    for b in range(B):
        hostile = b % 2 == 1
        row = KINDS[kind if hostile else "good"](V, g)
        if not from_logits and kind.startswith("mask"):
            row = row.masked_fill(row == MASKED, 0.0)
        if hostile and dtype == torch.float16 and kind == "huge":
            row = row / 1e37 * 1.5e4
        rows.append(row)
    return torch.stack(rows).to(dtype)
