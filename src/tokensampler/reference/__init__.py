"""The reference backend: pure PyTorch, exact, and the test oracle.

It implements docs/semantics.md literally: float64 weights, a stable sort for
the token order, float64 prefix masses, and the exponential race over the
random stream of :mod:`tokensampler.rng`. It runs on any torch device; on the
CPU it is tokensampler's production backend. Like the kernels, it records no
autograd graph.

Rows are processed in chunks so memory stays bounded at any batch size: about
2**18 elements on the CPU, where that keeps the Philox arithmetic in cache
(13x faster than whole-batch at V = 262144), and 2**24 on accelerators, where
launch count matters more.
"""

from __future__ import annotations

import torch

from .. import rng
from ..params import FilterCall, SamplingCall
from .filters import expand, kept, param_valid, weights

name = "reference"
def _chunks(n: int, vocab: int, device):
    elements = 1 << 18 if device.type == "cpu" else 1 << 24
    step = max(1, elements // vocab)
    for start in range(0, n, step):
        yield torch.arange(start, min(n, start + step), device=device)


def _per_output(t: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Column of a (1,)- or (N,)-shaped seed/offset tensor for outputs ``j``."""
    return (t[j] if t.shape[0] > 1 else t.expand(j.shape[0])).unsqueeze(1)


def _chunk_of(vocab: int, device) -> torch.Tensor:
    return torch.arange(vocab, device=device) // rng.CHUNK_TOKENS


def _race_chunks(w, keep, seed, offset, stream) -> torch.Tensor:
    """Stage one of the race: the chunk of each output, ``argmax_c W_c / E_c``
    over the kept masses ``W_c`` of its chunks of CHUNK_TOKENS tokens, as ``(n, 1)``."""
    n, vocab = w.shape
    n_chunks = -(-vocab // rng.CHUNK_TOKENS)
    kw = torch.nn.functional.pad(torch.where(keep, w, 0.0),
                                 (0, n_chunks * rng.CHUNK_TOKENS - vocab))
    mass = kw.view(n, n_chunks, rng.CHUNK_TOKENS).sum(dim=2)
    e = rng.exponential(rng.chunk_bits(seed, offset, stream, n_chunks))
    return (mass / e).argmax(dim=1, keepdim=True)


@torch.no_grad()
def sample(call: SamplingCall) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (int32) and validity (bool) for every output of ``call``."""
    x = call.x
    batch, vocab = x.shape
    device = x.device
    n = call.num_outputs
    samples = torch.zeros(n, dtype=torch.int32, device=device)
    valid = torch.zeros(n, dtype=torch.bool, device=device)
    f64 = torch.float64
    for j in _chunks(n, vocab, device):
        rows = j if call.indices is None else call.indices[j]
        # Indices on an accelerator are not range-checked on the host (that
        # would synchronise): an out-of-range id makes that output invalid.
        in_range = (rows >= 0) & (rows < batch)
        xs = x[torch.where(in_range, rows, 0)]
        temp = expand(call.temperature, j, f64, device) if call.from_logits else None
        w, ok, order_key, greedy = weights(xs, call.from_logits, temp)
        k = expand(call.top_k, j, torch.int64, device)
        p = expand(call.top_p, j, f64, device)
        m = expand(call.min_p, j, f64, device)
        ok &= in_range
        params_ok = param_valid(k, p, m)
        if params_ok is not None:
            ok &= params_ok
        keep = kept(w, order_key, k, p, m, call.joint)
        stream = (torch.zeros_like(j) if call.seed_per_output else j).unsqueeze(1)
        seed, offset = _per_output(call.seed, j), _per_output(call.offset, j)
        if vocab > rng.CHUNK_TOKENS:
            keep &= _chunk_of(vocab, device) == _race_chunks(w, keep, seed, offset, stream)
        bits = rng.row_bits(seed, offset, stream, vocab)
        race = torch.where(keep, w / rng.exponential(bits), -torch.inf)
        token = torch.where(greedy, order_key.argmax(dim=1), race.argmax(dim=1))
        samples[j] = torch.where(ok, token, 0).to(torch.int32)
        valid[j] = ok
    return samples, valid


def _filtered_weights(call: FilterCall, from_logits: bool):
    """Weights, validity, order key and kept mask for a renorm/mask call."""
    x = call.x
    batch, vocab = x.shape
    rows = torch.arange(batch, device=x.device)
    temp = expand(call.temperature if from_logits else None, rows, torch.float64, x.device)
    w, ok, order_key, greedy = weights(x, from_logits, temp)
    k = expand(call.top_k, rows, torch.int64, x.device)
    p = expand(call.top_p, rows, torch.float64, x.device)
    params_ok = param_valid(k, p, None)
    if params_ok is not None:
        ok &= params_ok
    keep = kept(w, order_key, k, p, None, joint=False)
    return w, ok, keep


@torch.no_grad()
def renorm(call: FilterCall) -> torch.Tensor:
    """Kept weights divided by their sum, float32; NaN rows where invalid."""
    w, ok, keep = _filtered_weights(call, from_logits=False)
    kw = torch.where(keep, w, 0.0)
    out = kw / kw.sum(dim=1, keepdim=True)
    return torch.where(ok.unsqueeze(1), out, torch.nan).to(torch.float32)


@torch.no_grad()
def mask_logits(call: FilterCall) -> torch.Tensor:
    """Logits with the dropped tokens set to -inf, input dtype; NaN rows where invalid."""
    _, ok, keep = _filtered_weights(call, from_logits=True)
    out = torch.where(keep, call.x.to(torch.float64), -torch.inf)
    return torch.where(ok.unsqueeze(1), out, torch.nan).to(call.x.dtype)


@torch.no_grad()
def softmax(call: FilterCall) -> torch.Tensor:
    """softmax(logits / T) in float32 (T = 0: uniform over the maxima); NaN rows where invalid."""
    w, ok, _ = _filtered_weights(call, from_logits=True)
    out = w / w.sum(dim=1, keepdim=True)
    return torch.where(ok.unsqueeze(1), out, torch.nan).to(torch.float32)
