"""Every bad argument raises before any work, naming the function, the argument,
what was expected and what came."""

import contextlib
import math
import re

import pytest
import torch

import tokensampler as ts

P = torch.full((3, 5), 0.2)
L = torch.zeros(3, 5)


@contextlib.contextmanager
def raises(exc, *patterns):
    """pytest.raises whose message must match every pattern (regex)."""
    with pytest.raises(exc) as info:
        yield info
    for p in patterns:
        assert re.search(p, str(info.value)), f"{p!r} not in {str(info.value)!r}"


@pytest.mark.parametrize("x, expected", [
    ([[0.5, 0.5]], "torch.Tensor"),
    (torch.ones(3, 5, dtype=torch.int32), "float32, float16 or bfloat16"),
    (torch.ones(3, 5, dtype=torch.float64), "float32, float16 or bfloat16"),
])
def test_input_type(x, expected):
    with raises(TypeError, "top_p_sampling_from_probs", "'probs'", expected):
        ts.top_p_sampling_from_probs(x, 0.5)


@pytest.mark.parametrize("x, expected", [
    (torch.ones(5), "2-D"), (torch.ones(2, 3, 4), "2-D"), (torch.ones(3, 0), "vocab >= 1"),
    (torch.ones(1, 1).expand(1, 2**29 + 1), r"at most 2\*\*29"),   # a view: no memory
])
def test_input_shape(x, expected):
    with raises(ValueError, "'probs'", expected, "shape"):
        ts.sampling_from_probs(x)
    with raises(ValueError, "'logits'", expected):
        ts.top_k_mask_logits(x, 2)


@pytest.mark.parametrize("fn, args, name, expected, got", [
    (ts.top_p_sampling_from_probs, (P, 1.5), "top_p", r"in \[0, 1\]", "1.5"),
    (ts.top_p_sampling_from_probs, (P, -0.1), "top_p", r"in \[0, 1\]", "-0.1"),
    (ts.top_p_sampling_from_probs, (P, math.nan), "top_p", r"in \[0, 1\]", "nan"),
    (ts.top_p_renorm_probs, (P, 2.0), "top_p", r"in \[0, 1\]", "2.0"),
    (ts.min_p_sampling_from_probs, (P, 1.25), "min_p", "at most 1", "1.25"),
    (ts.top_p_sampling_from_probs, (P, torch.tensor([0.5, 1.5, 0.5])), r"top_p\[1\]",
     r"in \[0, 1\]", "1.5"),
    (ts.top_p_sampling_from_probs, (P, torch.tensor([0.5, 0.5])), "top_p", r"shape \(3,\)",
     r"shape \(2,\)"),
    (ts.top_k_sampling_from_probs, (P, torch.tensor([1, 2, 3, 4])), "top_k", r"\(3,\)",
     r"\(4,\)"),
    (ts.top_k_top_p_sampling_from_probs, (P, 2, torch.ones(3, 1)), "top_p", r"\(3,\)",
     r"\(3, 1\)"),
])
def test_parameter_values(fn, args, name, expected, got):
    with raises(ValueError, fn.__name__, f"'{name}'", expected, got):
        fn(*args)


@pytest.mark.parametrize("fn, args, name", [
    (ts.top_k_sampling_from_probs, (P, 2.5), "top_k"),
    (ts.top_k_sampling_from_probs, (P, True), "top_k"),
    (ts.top_k_sampling_from_probs, (P, torch.tensor([1.0, 2.0, 3.0])), "top_k"),
    (ts.top_p_sampling_from_probs, (P, "0.5"), "top_p"),
    (ts.top_p_sampling_from_probs, (P, torch.tensor([1, 0, 1])), "top_p"),
])
def test_parameter_types(fn, args, name):
    with raises(TypeError, f"'{name}'"):
        fn(*args)


@pytest.mark.parametrize("t, got", [(-1.0, "-1.0"), (math.nan, "nan"), (math.inf, "inf"),
                                    (torch.tensor([1.0, -2.0, 1.0]), "-2.0")])
def test_temperature(t, got):
    with raises(ValueError, "temperature", r"in \[0, 3.4e38\]", got):
        ts.sampling_from_logits(L, temperature=t)
    if not isinstance(t, torch.Tensor):
        with raises(ValueError, "softmax", "temperature"):
            ts.softmax(L, t)


@pytest.mark.parametrize("kw, exc, pattern", [
    ({"seed": 1.5}, TypeError, "'seed'"),
    ({"seed": 2**64}, ValueError, r"'seed'.*2\*\*64"),
    ({"seed": -(2**63) - 1}, ValueError, "'seed'"),
    ({"seed": torch.tensor([1, 2])}, ValueError, r"'seed'.*\(1,\) or \(3,\)"),
    ({"seed": torch.tensor([1.0])}, TypeError, "'seed'"),
    ({"offset": torch.zeros(2, 2, dtype=torch.int64)}, ValueError, "'offset'"),
    ({"offset": "x"}, TypeError, "'offset'"),
    ({"generator": 3}, TypeError, "'generator'"),
    ({"indices": torch.tensor([0, 3])}, ValueError, r"'indices'.*\[0, 3\).*\[0, 3\]"),
    ({"indices": torch.tensor([-1])}, ValueError, "'indices'"),
    ({"indices": torch.tensor([0.0])}, TypeError, "'indices'"),
    ({"indices": torch.zeros(2, 2, dtype=torch.int64)}, ValueError, "'indices'"),
    ({"backend": "cuda"}, ValueError, "'backend'.*'reference', 'triton'.*'cuda'"),
])
def test_sampler_keywords(kw, exc, pattern):
    with raises(exc, "sampling_from_probs", pattern):
        ts.sampling_from_probs(P, **kw)


def test_filter_apply_order():
    with raises(ValueError, "filter_apply_order", "'top_k_first' or 'joint'", "'both'"):
        ts.top_k_top_p_sampling_from_probs(P, 2, 0.5, filter_apply_order="both")


def test_environment_override_is_checked(monkeypatch):
    monkeypatch.setenv("TOKENSAMPLER_BACKEND", "fast")
    with raises(ValueError, "TOKENSAMPLER_BACKEND", "'fast'"):
        ts.sampling_from_probs(P)
    monkeypatch.setenv("TOKENSAMPLER_BACKEND", "reference")
    assert ts.sampling_from_probs(P, seed=0).shape == (3,)


def test_generator_on_another_device():
    x = torch.zeros(3, 5, device="meta")
    with raises(ValueError, "'generator'", "meta", "cpu"):
        ts.sampling_from_probs(x, generator=torch.Generator())


def test_tensors_on_different_devices():
    meta = torch.zeros(3, device="meta")
    with raises(ValueError, "'top_p'", "input's device cpu", "meta"):
        ts.top_p_sampling_from_probs(P, meta)


def test_errors_are_tokensampler_errors():
    with pytest.raises(ts.TokenSamplerError):
        ts.top_p_sampling_from_probs(P, 3.0)
    with pytest.raises(ts.TokenSamplerError):
        ts.top_k_sampling_from_probs(P, 2.5)


def test_numbers_and_tensors_are_checked_alike():
    """Both are rounded to float32 first: 1 + 1e-10 is top_p = 1 in either form."""
    x = torch.tensor([[0.5, 0.25, 0.25]])
    for value in (1.0000000001, torch.tensor([1.0000000001], dtype=torch.float64)):
        assert ts.top_p_sampling_from_probs(x, value, seed=0).shape == (1,)
    for value in (1.0001, torch.tensor([1.0001], dtype=torch.float64)):
        with raises(ValueError, "top_p"):
            ts.top_p_sampling_from_probs(x, value, seed=0)


def test_numpy_scalars_are_numbers():
    import numpy as np

    a = ts.top_k_top_p_sampling_from_probs(P, np.int64(2), np.float32(0.5), seed=np.int64(3))
    b = ts.top_k_top_p_sampling_from_probs(P, 2, 0.5, seed=3)
    assert torch.equal(a, b)


def test_integers_beyond_float64():
    with raises(ValueError, "'top_p'", r"in \[0, 1\]"):
        ts.top_p_sampling_from_probs(P, 10**400)
    with raises(ValueError, "'temperature'"):
        ts.sampling_from_logits(L, temperature=10**400)
    # min_p <= 0 disables the filter, however negative.
    assert ts.min_p_sampling_from_probs(P, -(10**400), seed=0).shape == (3,)


def test_backend_must_be_a_string():
    with raises(TypeError, "'backend'", "string", "int"):
        ts.sampling_from_probs(P, backend=1)


def test_filter_functions_count_rows_not_outputs():
    with raises(ValueError, "top_p_renorm_probs", r"shape \(3,\), one value per row"):
        ts.top_p_renorm_probs(P, torch.tensor([0.5]))


def test_softmax_accepts_enable_pdl_and_outputs_carry_no_graph():
    x = torch.zeros(2, 3, requires_grad=True)
    assert not ts.softmax(x, None, True).requires_grad
    assert not ts.top_p_renorm_probs(x.softmax(1), 0.5).requires_grad


def test_f32_rounds_as_float32_tensors_do():
    """params.f32 (struct) rounds Python floats exactly as a float32 tensor
    does, overflow included: parameters mean the same as numbers or tensors."""
    from tokensampler.params import f32
    g = torch.Generator().manual_seed(0)
    values = [0.1, 1 / 3, 0.9, 1e-45, 7e-46, 1e-40, 3.4028234663852886e38, 3.4028235e38,
              3.4028236e38, 1e39, -0.0, math.inf, -math.inf]
    values += (torch.rand(2000, generator=g, dtype=torch.float64) * 90 - 45).exp().tolist()
    for v in values + [-v for v in values]:
        want = float(torch.tensor(v, dtype=torch.float32))
        try:
            got = f32(v)
        except OverflowError:
            got = math.copysign(math.inf, v)
        assert got == want or (math.isnan(got) and math.isnan(want)), v
    assert math.isnan(f32(math.nan))
