"""Hostile batches through every sampler (issue 4, section 4: the CI campaign).

Every row of every batch must: return; give an id in [0, V); get ``valid``
exactly as the specification says (tests/bruteforce.py); when valid, give a
token of its kept set; and, for the good rows between hostile ones, give the
same token as the row alone (per-output seeds make a row's draw independent
of its neighbours). The reference runs the whole campaign; the Triton kernels
(under the interpreter on CPU) run it too and must match the reference token
for token.
"""

import math

import pytest
import torch

import bruteforce as bf
import tokensampler as ts
from adversarial import KINDS, hostile_batch
from helpers import DEVICE, available_backends

V, B = 37, 6

# name: (function, from_logits, keyword parameters)
SAMPLERS = {
    "probs": (ts.sampling_from_probs, False, {}),
    "logits": (ts.sampling_from_logits, True, {"temperature": 0.7}),
    "top_p": (ts.top_p_sampling_from_probs, False, {"top_p": 0.6}),
    "top_k": (ts.top_k_sampling_from_probs, False, {"top_k": 5}),
    "min_p": (ts.min_p_sampling_from_probs, False, {"min_p": 0.2}),
    "kp_first": (ts.top_k_top_p_sampling_from_probs, False, {"top_k": 9, "top_p": 0.5}),
    "kp_joint": (ts.top_k_top_p_sampling_from_probs, False,
                 {"top_k": 9, "top_p": 0.5, "filter_apply_order": "joint"}),
    "logits_kp": (ts.top_k_top_p_sampling_from_logits, True, {"top_k": 9, "top_p": 0.8}),
    "logits_greedy": (ts.top_k_top_p_sampling_from_logits, True,
                      {"top_k": 9, "top_p": 0.8, "temperature": 0.0}),
}

# Extreme but legal parameters (issue 4): applied to a batch of mixed kinds.
EXTREMES = [
    (ts.top_p_sampling_from_probs, False, {"top_p": 0.0}),
    (ts.top_p_sampling_from_probs, False, {"top_p": 1.0}),
    (ts.top_k_sampling_from_probs, False, {"top_k": 1}),
    (ts.top_k_sampling_from_probs, False, {"top_k": V}),
    (ts.top_k_sampling_from_probs, False, {"top_k": V + 1}),
    (ts.min_p_sampling_from_probs, False, {"min_p": 0.0}),
    (ts.min_p_sampling_from_probs, False, {"min_p": 1.0}),
    (ts.sampling_from_logits, True, {"temperature": 0.0}),
    (ts.sampling_from_logits, True, {"temperature": 1e-30}),
    (ts.sampling_from_logits, True, {"temperature": 1e30}),
]


def _brute_kwargs(kw):
    return dict(top_k=kw.get("top_k"), top_p=kw.get("top_p"), min_p=kw.get("min_p"),
                temperature=kw.get("temperature"),
                joint=kw.get("filter_apply_order") == "joint")


def check_batch(fn, from_logits, kw, x, backend):
    """Run one hostile batch and check every row; returns the tokens."""
    n = x.shape[0]
    seeds = torch.arange(n, device=DEVICE) * 7919 + 11
    out, valid = fn(x.to(DEVICE), **kw, seed=seeds, return_valid=True, backend=backend)
    out, valid = out.cpu(), valid.cpu()
    assert out.shape == (n,) and out.dtype == torch.int32
    assert ((out >= 0) & (out < x.shape[1])).all(), out.tolist()
    bk = _brute_kwargs(kw)
    for i in range(n):
        row = x[i].double().tolist()
        w, ok, greedy, order = bf.brute_weights(row, from_logits, bk["temperature"])
        assert bool(valid[i]) == ok, (i, row)
        if not ok:
            continue
        tok = int(out[i])
        if greedy:
            m = max(row)
            assert tok == min(j for j, v in enumerate(row) if v == m)
            continue
        keep = bf.brute_keep_mask(w, order, bk["top_k"], bk["top_p"], bk["min_p"], bk["joint"])
        if not keep[tok]:
            assert bf.top_p_ambiguous(w, order, bk["top_k"], bk["top_p"], bk["joint"]), (i, tok)
    return out, seeds


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_reference_campaign(kind):
    for name, (fn, from_logits, kw) in SAMPLERS.items():
        x = hostile_batch(kind, V, B, seed=len(kind), from_logits=from_logits)
        out, seeds = check_batch(fn, from_logits, kw, x, "reference")
        for i in range(0, B, 2):   # good rows: the same token alone
            alone = fn(x[i:i + 1].to(DEVICE), **kw, seed=seeds[i:i + 1], backend="reference")
            assert int(alone) == int(out[i]), (name, kind, i)


@pytest.mark.parametrize("fn, from_logits, kw", EXTREMES,
                         ids=[f"{f.__name__}-{k}" for f, _, k in EXTREMES])
def test_extreme_parameters(fn, from_logits, kw):
    x = torch.cat([hostile_batch(k, V, 2, seed=3, from_logits=from_logits)
                   for k in ("ties", "mask_99", "nan", "one_hot", "uniform")])
    check_batch(fn, from_logits, kw, x, "reference")
    if "triton" in available_backends(DEVICE):
        ref = fn(x.to(DEVICE), **kw, seed=5, return_valid=True, backend="reference")
        got = fn(x.to(DEVICE), **kw, seed=5, return_valid=True, backend="triton")
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])


@pytest.mark.skipif("triton" not in available_backends(DEVICE),
                    reason="Triton backend unusable here (see tokensampler info)")
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_triton_campaign(kind):
    for name, (fn, from_logits, kw) in SAMPLERS.items():
        x = hostile_batch(kind, V, B, seed=len(kind), from_logits=from_logits)
        got, _ = check_batch(fn, from_logits, kw, x, "triton")
        ref, _ = check_batch(fn, from_logits, kw, x, "reference")
        assert torch.equal(got, ref), (name, kind)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_hostile_rows(dtype):
    """Ties are common in half precision; huge values saturate float16."""
    for kind in ("ties", "huge", "denormal", "mask_99"):
        for name in ("top_p", "logits_kp"):
            fn, from_logits, kw = SAMPLERS[name]
            x = hostile_batch(kind, V, B, seed=1, from_logits=from_logits, dtype=dtype)
            check_batch(fn, from_logits, kw, x, "reference")
            assert not math.isinf(float(x.float().abs().max())) or kind != "huge"


@pytest.mark.skipif("triton" not in available_backends(DEVICE),
                    reason="Triton backend unusable here (see tokensampler info)")
def test_campaign_script_counts_nothing_wrong():
    """tests/campaign.py (the GPU campaign) on a small scale, so it cannot rot."""
    import campaign

    samplers = ("probs", "min_p", "kp_joint", "logits_kp")
    report = campaign.summary(campaign.run(15, vocabs=(37,), device=DEVICE, samplers=samplers,
                                           progress=False))
    total = report["total"]
    assert total["hostile_rows"] == 15 * len(samplers) and total["rows"] == 2 * total["hostile_rows"]
    assert set(report["by_kind"]) == set(KINDS) - {"good"}
    bad = {k: v for k, v in total.items() if k not in ("rows", "hostile_rows") and v}
    assert not bad, bad


def test_campaign_counts_a_hang_and_still_reports(monkeypatch):
    """A call that times out is counted as a hang and ends the campaign,
    which still returns what it counted."""
    import campaign

    def hang(*args, **kwargs):
        raise ts.SamplingTimeoutError("stand-in for a hung call")
    monkeypatch.setitem(campaign.SAMPLERS, "probs", (hang, False, ()))
    result = campaign.run(15, vocabs=(37,), device=DEVICE, samplers=("min_p", "probs", "top_k"),
                          progress=False)
    report = campaign.summary(result)
    assert report["total"]["hangs"] == 1 and "stand-in" in report["stopped"]
    assert report["by_sampler"]["min_p"]["hostile_rows"] == 15
    assert "top_k" not in report["by_sampler"]
