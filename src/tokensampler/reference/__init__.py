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


# Top-p alone draws by adaptive rejection (docs/semantics.md section 5):
# at most ROUNDS rounds of DRAWS draws, then the race over the kept tokens.
ROUNDS = 3
DRAWS = 4


def _two_stage(w, allowed, seed, offset, stream, draw: int) -> torch.Tensor:
    """The two-stage race over the tokens ``allowed`` of each output, with the
    random numbers of draw ``draw``: a chunk of CHUNK_TOKENS tokens by its
    allowed mass, ``argmax_c W_c / F_c``, then ``argmax_i w_i / E_i`` over the
    allowed tokens of that chunk (ties to the lower index). Returns ``(n,)``."""
    n, vocab = w.shape
    size = min(vocab, rng.CHUNK_TOKENS)
    start = torch.zeros(n, 1, dtype=torch.int64, device=w.device)
    if vocab > rng.CHUNK_TOKENS:
        n_chunks = -(-vocab // rng.CHUNK_TOKENS)
        aw = torch.nn.functional.pad(torch.where(allowed, w, 0.0),
                                     (0, n_chunks * rng.CHUNK_TOKENS - vocab))
        mass = aw.view(n, n_chunks, rng.CHUNK_TOKENS).sum(dim=2)
        e = rng.exponential(rng.chunk_bits(seed, offset, stream, n_chunks, draw))
        start = (mass / e).argmax(dim=1, keepdim=True) * rng.CHUNK_TOKENS
    # Random numbers for the chosen chunk only.
    tokens = start + torch.arange(size, device=w.device)
    inside = tokens < vocab
    tokens = torch.where(inside, tokens, 0)
    bits = rng.token_bits(seed, offset, stream, tokens, draw)
    race = torch.where(inside & allowed.gather(1, tokens), w.gather(1, tokens)
                       / rng.exponential(bits), -torch.inf)
    return tokens.gather(1, race.argmax(dim=1, keepdim=True)).squeeze(1)


def _rejection(w, keep, order_key, seed, offset, stream) -> torch.Tensor:
    """Top-p alone: the first kept of DRAWS draws from a set that holds every
    kept token, shrunk after each round to the tokens before the round's
    earliest draw in the order; after ROUNDS rounds, the race over the kept
    tokens. Returns ``(n,)`` token ids."""
    n, vocab = w.shape
    idx = torch.arange(vocab, device=w.device)
    allowed = torch.ones_like(keep)
    token = torch.zeros(n, dtype=torch.int64, device=w.device)
    done = torch.zeros(n, dtype=torch.bool, device=w.device)
    for k in range(ROUNDS):
        drawn = []
        for r in range(DRAWS):
            d = _two_stage(w, allowed, seed, offset, stream, k * DRAWS + r)
            hit = keep.gather(1, d.unsqueeze(1)).squeeze(1) & ~done
            token = torch.where(hit, d, token)
            done |= hit
            drawn.append(d)
        if bool(done.all()):
            return token     # later draws change no decided output
        # Every kept token comes before every token top-p drops (the kept set
        # is a prefix of the order): the next round draws from the tokens
        # before the earliest of this round's (all dropped) draws.
        d = torch.stack(drawn, dim=1)
        kd = order_key.gather(1, d)
        top = kd.max(dim=1, keepdim=True).values
        first = torch.where(kd == top, d, vocab).min(dim=1, keepdim=True).values
        allowed = (order_key > top) | ((order_key == top) & (idx < first))
    last = _two_stage(w, keep, seed, offset, stream, ROUNDS * DRAWS)
    return torch.where(done, token, last)


def warm_batches() -> tuple[int, ...]:
    """Numbers of outputs ``tokensampler.warmup`` calls each op with: one
    form at every batch here."""
    return (2,)


def precompile(make_calls, threads: int) -> int:
    """Nothing to compile here."""
    return 0


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
        drawn = _two_stage(w, keep, seed, offset, stream, 0)
        if p is not None:
            # Outputs whose only active filter is top-p draw by rejection.
            alone = torch.ones_like(ok)
            if k is not None:
                alone &= ~((k > 0) & (k < vocab)).squeeze(1)
            if m is not None:
                alone &= ~(m > 0).squeeze(1)
            if bool(alone.any()):
                drawn = torch.where(alone, _rejection(w, keep, order_key, seed, offset, stream),
                                    drawn)
        token = torch.where(greedy, order_key.argmax(dim=1), drawn)
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
