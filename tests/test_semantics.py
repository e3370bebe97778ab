"""Hand-made cases for every rule of docs/semantics.md.

Weights are dyadic (k / 2**n), so every sum is exact in float32 and float64
and each expected kept set is unambiguous.
"""

import math

import pytest
import torch

import tokensampler as ts
from helpers import drawn_set, row

INF = math.inf
HALVES = row(0.5, 0.25, 0.125, 0.125)


# --- top-p --------------------------------------------------------------------

@pytest.mark.parametrize("top_p, kept", [
    (0.0, {0}),            # top_p == 0 keeps the single first token
    (0.25, {0}),
    (0.5, {0}),            # mass before token 1 is exactly 0.5: not < 0.5
    (0.5000001, {0, 1}),   # just above: token 1 crosses the threshold and is kept
    (0.625, {0, 1}),
    (0.75, {0, 1}),
    (0.8125, {0, 1, 2}),
    (0.875, {0, 1, 2}),
    (0.9375, {0, 1, 2, 3}),
    (1.0, {0, 1, 2, 3}),   # disabled
])
def test_top_p_keeps_the_crossing_token(backend, top_p, kept):
    assert drawn_set(ts.top_p_sampling_from_probs, HALVES, top_p, backend=backend) == kept
    renorm = ts.top_p_renorm_probs(HALVES, top_p, backend=backend)
    assert set(renorm[0].nonzero().flatten().tolist()) == kept


def test_top_p_is_relative_to_the_row_total(backend):
    scaled = HALVES * 8  # unnormalised weights [4, 2, 1, 1]
    for top_p in (0.5, 0.625, 0.8125):
        assert (drawn_set(ts.top_p_sampling_from_probs, scaled, top_p, backend=backend)
                == drawn_set(ts.top_p_sampling_from_probs, HALVES, top_p, backend=backend))


def test_top_p_ties_go_to_the_lower_index(backend):
    tied = row(0.125, 0.25, 0.25, 0.25, 0.125)
    assert drawn_set(ts.top_p_sampling_from_probs, tied, 0.25, backend=backend) == {1}
    assert drawn_set(ts.top_p_sampling_from_probs, tied, 0.5, backend=backend) == {1, 2}
    assert drawn_set(ts.top_p_sampling_from_probs, tied, 0.0, backend=backend) == {1}


# --- top-k --------------------------------------------------------------------

@pytest.mark.parametrize("top_k, kept", [
    (1, {1}), (2, {1, 2}), (3, {1, 2, 3}),
    (0, {0, 1, 2, 3, 4}), (-3, {0, 1, 2, 3, 4}),      # k <= 0 disables
    (5, {0, 1, 2, 3, 4}), (6, {0, 1, 2, 3, 4}),       # k >= V disables
])
def test_top_k_with_ties(backend, top_k, kept):
    tied = row(0.125, 0.25, 0.25, 0.25, 0.125)
    assert drawn_set(ts.top_k_sampling_from_probs, tied, top_k, backend=backend) == kept
    renorm = ts.top_k_renorm_probs(tied, top_k, backend=backend)
    assert set(renorm[0].nonzero().flatten().tolist()) == kept


def test_top_k_1_is_argmax_lowest_index(backend):
    x = torch.tensor([[1.0, 3.0, 3.0, 2.0], [0.0, 0.0, 0.0, 0.0], [5.0, -1.0, 5.0, 5.0]])
    probs = torch.softmax(x, dim=1)
    for seed in range(5):
        got = ts.top_k_sampling_from_probs(probs, 1, seed=seed, backend=backend)
        assert got.tolist() == [1, 0, 0]
        got = ts.top_k_top_p_sampling_from_logits(x, 1, 1.0, seed=seed, backend=backend)
        assert got.tolist() == [1, 0, 0]


# --- min-p --------------------------------------------------------------------

@pytest.mark.parametrize("min_p, kept", [
    (1.0, {0}), (0.5, {0, 1}), (0.25, {0, 1, 2, 3}), (0.0, {0, 1, 2, 3}), (-1.0, {0, 1, 2, 3}),
])
def test_min_p(backend, min_p, kept):
    assert drawn_set(ts.min_p_sampling_from_probs, HALVES, min_p, backend=backend) == kept


def test_min_p_one_keeps_every_maximum(backend):
    tied = row(0.25, 0.375, 0.375)
    assert drawn_set(ts.min_p_sampling_from_probs, tied, 1.0, backend=backend) == {1, 2}


# --- joint top-k + top-p --------------------------------------------------------

def test_filter_orders_differ(backend):
    # docs/semantics.md's example: kept mass 6/8 vs the whole row.
    fn = ts.top_k_top_p_sampling_from_probs
    assert drawn_set(fn, HALVES, 2, 0.625, filter_apply_order="top_k_first",
                     backend=backend) == {0}
    assert drawn_set(fn, HALVES, 2, 0.625, filter_apply_order="joint", backend=backend) == {0, 1}
    logits = torch.log(HALVES)
    fl = ts.top_k_top_p_sampling_from_logits
    assert drawn_set(fl, logits, 2, 0.625, backend=backend) == {0}
    assert drawn_set(fl, logits, 2, 0.625, filter_apply_order="joint", backend=backend) == {0, 1}


def test_joint_is_intersection(backend):
    fn = ts.top_k_top_p_sampling_from_probs
    # top-p alone would keep {0, 1, 2}; top-k = 2 cuts it in both orders.
    for order in ("top_k_first", "joint"):
        assert drawn_set(fn, HALVES, 2, 0.8125, filter_apply_order=order,
                         backend=backend) == {0, 1}
        assert drawn_set(fn, HALVES, 0, 0.8125, filter_apply_order=order,
                         backend=backend) == {0, 1, 2}


# --- logits and temperature ---------------------------------------------------

def test_temperature_zero_is_greedy(backend):
    x = torch.tensor([[1.0, 3.0, 3.0, -INF], [-INF, -INF, 0.0, -1.0]])
    for fn in (ts.sampling_from_logits,
               lambda l, **kw: ts.top_k_top_p_sampling_from_logits(l, 3, 0.5, **kw)):
        for seed in range(4):
            assert fn(x, temperature=0.0, seed=seed, backend=backend).tolist() == [1, 2]
    # Per-output temperatures: output 0 greedy, output 1 not; 50 draws of row 0 each.
    per_output = torch.tensor([0.0, 1.0]).repeat(50)
    out = ts.sampling_from_logits(x, temperature=per_output, seed=0,
                                  indices=torch.zeros(100, dtype=torch.int64), backend=backend)
    assert set(out[0::2].tolist()) == {1} and set(out[1::2].tolist()) == {0, 1, 2}


def test_minus_inf_logits_never_drawn(backend):
    x = torch.tensor([[0.0, -INF, 0.0, -INF, 1.0]])
    assert drawn_set(ts.sampling_from_logits, x, backend=backend) == {0, 2, 4}
    assert drawn_set(ts.top_k_top_p_sampling_from_logits, x, 4, 1.0, backend=backend) == {0, 2, 4}


def test_tiny_and_huge_temperatures(backend):
    x = torch.tensor([[0.0, 1.0, 0.5, 1.0 - 2**-20]])
    assert drawn_set(ts.sampling_from_logits, x, temperature=1e-30, backend=backend) == {1}
    # A huge temperature flattens the row: every token is drawn.
    assert drawn_set(ts.sampling_from_logits, x, temperature=1e30, backend=backend) == {0, 1, 2, 3}


def test_softmax_and_mask(backend):
    x = torch.tensor([[0.0, 0.0, -INF, math.log(2.0)]])
    p = ts.softmax(x, backend=backend)
    assert torch.allclose(p, torch.tensor([[0.25, 0.25, 0.0, 0.5]]), rtol=1e-6, atol=0)
    assert ts.softmax(x, 0.0, backend=backend).tolist() == [[0.0, 0.0, 0.0, 1.0]]
    tied = torch.tensor([[2.0, 1.0, 2.0]])
    assert ts.softmax(tied, 0.0, backend=backend).tolist() == [[0.5, 0.0, 0.5]]
    m = ts.top_k_mask_logits(torch.tensor([[1.0, 3.0, 3.0, 2.0]], dtype=torch.bfloat16), 2,
                             backend=backend)
    assert m.dtype == torch.bfloat16
    assert m.float().tolist() == [[-INF, 3.0, 3.0, -INF]]


def test_renorm_values_are_exact(backend):
    out = ts.top_p_renorm_probs(HALVES * 2, 0.8125, backend=backend)  # unnormalised input
    assert out.dtype == torch.float32
    assert out.tolist() == [[4 / 7, 2 / 7, 1 / 7, 0.0]] or torch.allclose(
        out, torch.tensor([[4 / 7, 2 / 7, 1 / 7, 0.0]]), rtol=2e-7, atol=0)
    out = ts.top_k_renorm_probs(HALVES, 2, backend=backend)
    assert torch.allclose(out, torch.tensor([[2 / 3, 1 / 3, 0.0, 0.0]]), rtol=2e-7, atol=0)


# --- randomness ---------------------------------------------------------------

def _batch(b=6, v=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, v, generator=g) ** 4


def test_same_seed_same_tokens_and_offsets_differ(backend):
    probs = _batch(16, 50)
    a = ts.sampling_from_probs(probs, seed=5, offset=9, backend=backend)
    b = ts.sampling_from_probs(probs, seed=5, offset=9, backend=backend)
    c = ts.sampling_from_probs(probs, seed=5, offset=10, backend=backend)
    d = ts.sampling_from_probs(probs, seed=6, offset=9, backend=backend)
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, d)


def test_seed_ints_and_tensors_agree(backend):
    probs = _batch()
    a = ts.sampling_from_probs(probs, seed=2**64 - 3, offset=2**40 + 1, backend=backend)
    b = ts.sampling_from_probs(probs, seed=torch.tensor([-3]), offset=torch.tensor([2**40 + 1]),
                               backend=backend)
    c = ts.sampling_from_probs(probs, seed=torch.tensor([2**64 - 3], dtype=torch.uint64),
                               offset=torch.tensor([2**40 + 1]), backend=backend)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_default_generator_advances_and_manual_seed_reproduces(backend):
    probs = _batch(16, 50)
    torch.manual_seed(0)
    a = ts.sampling_from_probs(probs, backend=backend)
    b = ts.sampling_from_probs(probs, backend=backend)
    torch.manual_seed(0)
    a2 = ts.sampling_from_probs(probs, backend=backend)
    assert not torch.equal(a, b)
    assert torch.equal(a, a2)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(ts.sampling_from_probs(probs, generator=g1, backend=backend),
                       ts.sampling_from_probs(probs, generator=g2, backend=backend))


def test_scalar_seed_rows_differ():
    # Same row at every position and one seed: positions enter the stream.
    probs = torch.full((200, 64), 1.0)
    out = ts.sampling_from_probs(probs, seed=3)
    assert len(set(out.tolist())) > 40


def test_per_output_seeds_are_batch_invariant(backend):
    probs = _batch(8, 41, seed=3)
    seeds = torch.arange(100, 108)
    offsets = torch.arange(8) * 7
    full = ts.top_p_sampling_from_probs(probs, 0.9, seed=seeds, offset=offsets, backend=backend)
    perm = torch.tensor([5, 2, 7, 0, 1, 6, 3, 4])
    shuffled = ts.top_p_sampling_from_probs(probs[perm], 0.9, seed=seeds[perm],
                                            offset=offsets[perm], backend=backend)
    assert torch.equal(shuffled, full[perm])
    for i in (0, 5):  # alone, in a batch of one, with the (1,) seed of that row
        alone = ts.top_p_sampling_from_probs(probs[i:i + 1], 0.9, seed=seeds[i:i + 1],
                                             offset=offsets[i:i + 1], backend=backend)
        assert alone.item() == full[i].item()


def test_indices_draw_independently(backend):
    probs = _batch(3, 20)
    idx = torch.tensor([2, 2, 2, 0, 2, 1] * 10)
    out, valid = ts.sampling_from_probs(probs, indices=idx, seed=1, return_valid=True,
                                        backend=backend)
    assert out.shape == (60,) and out.dtype == torch.int32 and bool(valid.all())
    assert len(set(out[idx == 2].tolist())) > 3
    # Output j of row indices[j] equals the same draw made from a batch of copies.
    copies = ts.sampling_from_probs(probs[idx], seed=1, backend=backend)
    assert torch.equal(out, copies)


# --- bad rows -------------------------------------------------------------------

BAD_PROBS = {
    "nan": [0.5, math.nan, 0.5],
    "+inf": [0.5, INF, 0.5],
    "-inf": [0.5, -INF, 0.5],
    "negative": [0.5, -0.25, 0.5],
    "zero": [0.0, 0.0, 0.0],
}
BAD_LOGITS = {
    "nan": [0.5, math.nan, 0.5],
    "+inf": [0.5, INF, 0.5],
    "all -inf": [-INF, -INF, -INF],
}

PROB_SAMPLERS = {
    "plain": lambda x, **kw: ts.sampling_from_probs(x, **kw),
    "top_p": lambda x, **kw: ts.top_p_sampling_from_probs(x, 0.7, **kw),
    "top_k": lambda x, **kw: ts.top_k_sampling_from_probs(x, 2, **kw),
    "min_p": lambda x, **kw: ts.min_p_sampling_from_probs(x, 0.1, **kw),
    "joint": lambda x, **kw: ts.top_k_top_p_sampling_from_probs(x, 2, 0.7, **kw),
}
LOGIT_SAMPLERS = {
    "plain": lambda x, **kw: ts.sampling_from_logits(x, **kw),
    "greedy": lambda x, **kw: ts.sampling_from_logits(x, temperature=0.0, **kw),
    "joint": lambda x, **kw: ts.top_k_top_p_sampling_from_logits(x, 2, 0.7, **kw),
}


def _bad_row_case(samplers, good, bad_rows, backend):
    for name, fn in samplers.items():
        for kind, bad in bad_rows.items():
            x = good.clone()
            x[1] = torch.tensor(bad)
            out, valid = fn(x, seed=11, return_valid=True, backend=backend)
            ref, ref_valid = fn(good, seed=11, return_valid=True, backend=backend)
            assert out[1].item() == 0 and not valid[1].item(), (name, kind)
            keep = torch.tensor([True, False, True])
            assert torch.equal(out[keep], ref[keep]), (name, kind)
            assert bool(valid[keep].all()) and bool(ref_valid.all()), (name, kind)


def test_bad_probs_rows(backend):
    _bad_row_case(PROB_SAMPLERS, torch.tensor([[0.25, 0.5, 0.25]] * 3), BAD_PROBS, backend)


def test_bad_logit_rows(backend):
    _bad_row_case(LOGIT_SAMPLERS, torch.tensor([[0.0, 1.0, -INF]] * 3), BAD_LOGITS, backend)


def test_bad_rows_in_filters_are_nan(backend):
    x = torch.tensor([[0.25, 0.5, 0.25], [0.0, 0.0, 0.0]])
    for out in (ts.top_p_renorm_probs(x, 0.5, backend=backend),
                ts.top_k_renorm_probs(x, 1, backend=backend)):
        assert torch.isnan(out[1]).all() and not torch.isnan(out[0]).any()
    logits = torch.tensor([[0.0, 1.0, 2.0], [-INF, -INF, -INF]])
    for out in (ts.top_k_mask_logits(logits, 1, backend=backend), ts.softmax(logits, backend=backend)):
        assert torch.isnan(out[1]).all() and not torch.isnan(out[0]).any()


def test_check_nan_raises_naming_rows(backend):
    x = torch.tensor([[0.25, 0.5, 0.25], [0.5, math.nan, 0.5]])
    with pytest.raises(ValueError, match=r"probs.*row\(s\) 1"):
        ts.sampling_from_probs(x, check_nan=True, backend=backend)


# --- dtypes, layouts, sizes ----------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_read_natively(backend, dtype):
    probs = _batch(5, 33).to(dtype)
    a = ts.top_k_top_p_sampling_from_probs(probs, 10, 0.8, seed=4, backend=backend)
    b = ts.top_k_top_p_sampling_from_probs(probs.float(), 10, 0.8, seed=4, backend=backend)
    assert torch.equal(a, b)  # fp16/bf16 -> fp32 is exact, so the tokens are the same


def test_row_stride_and_vocab_one(backend):
    wide = _batch(6, 64)
    view = wide[::2, :37]
    assert not view.is_contiguous()
    assert torch.equal(ts.top_p_sampling_from_probs(view, 0.9, seed=2, backend=backend),
                       ts.top_p_sampling_from_probs(view.contiguous(), 0.9, seed=2,
                                                    backend=backend))
    one = torch.ones(4, 1)
    assert ts.top_k_top_p_sampling_from_probs(one, 1, 0.5, seed=0,
                                              backend=backend).tolist() == [0] * 4


def test_empty_batch(backend):
    out, valid = ts.sampling_from_probs(torch.ones(0, 5), seed=0, return_valid=True,
                                        backend=backend)
    assert out.shape == (0,) and valid.shape == (0,)


def test_reference_handles_the_largest_vocab():
    """V = 262144, B = 256 on the CPU: the size the foundation issue names."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(256, 262144, generator=g) * 3
    out, valid = ts.top_k_top_p_sampling_from_logits(logits, 1000, 0.9, seed=1, return_valid=True,
                                                     backend="reference")
    assert bool(valid.all()) and int(out.min()) >= 0 and int(out.max()) < 262144
    # top-k 1000 of each row: every drawn token is among its row's 1000 largest logits.
    kth = logits.topk(1000, dim=1).values[:, -1]
    assert bool((logits.gather(1, out.long().unsqueeze(1)).squeeze(1) >= kth).all())
