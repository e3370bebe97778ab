"""The random stream of tokensampler.rng: known answers and internal consistency."""

import math

import pytest
import torch

from helpers import KAT
from tokensampler import rng



@pytest.mark.parametrize("counter, key, expected", KAT)
def test_philox_known_answers(counter, key, expected):
    args = [torch.tensor([v], dtype=torch.int64) for v in (*counter, *key)]
    assert tuple(int(w) for w in rng.philox4x32(*args)) == expected


def test_row_bits_match_token_bits():
    seed = torch.tensor([[3], [-(2**63)], [2**62 + 5]])
    offset = torch.tensor([[0], [2**40 + 7], [-1]])
    stream = torch.tensor([[0], [1], [2**31]])
    dense = rng.row_bits(seed, offset, stream, 4 * 9 + 3)
    tokens = torch.arange(39).unsqueeze(0)
    assert torch.equal(dense, rng.token_bits(seed, offset, stream, tokens))
    # Each token's bits depend on the full 64-bit seed and offset and the stream.
    assert len({tuple(r.tolist()) for r in dense}) == 3
    assert int(dense.min()) >= 0 and int(dense.max()) < 2**32


def test_counter_layout_is_as_documented():
    seed, offset, stream = 0x0123456789ABCDEF, 0x0FEDCBA987654321, 5
    bits = rng.token_bits(torch.tensor([[seed]]), torch.tensor([[offset]]),
                          torch.tensor([[stream]]), torch.tensor([[9]]))
    words = rng.philox4x32(*(torch.tensor([v]) for v in (
        9 // 4, stream, offset & 0xFFFFFFFF, offset >> 32, seed & 0xFFFFFFFF, seed >> 32)))
    assert int(bits) == int(words[9 % 4])


def test_exponential_extremes_are_accurate():
    bits = torch.tensor([0, 2**31 - 1, 2**31, 2**32 - 1])
    e = rng.exponential(bits)
    assert float(e[0]) == pytest.approx(33 * math.log(2), rel=1e-15)
    assert float(e[3]) == pytest.approx(2.0**-33, rel=1e-9)  # -log1p(-2**-33)
    assert float(e[1]) == pytest.approx(-math.log((2**31 - 0.5) / 2**32), rel=1e-15)
    assert float(e[2]) == pytest.approx(-math.log1p(-(2**31 - 0.5) / 2**32), rel=1e-15)
    assert bool((e > 0).all())


def test_uniform_moments():
    """Mean and variance of 2**20 uniforms, 6 sigma bands (alpha ~ 2e-9)."""
    bits = rng.row_bits(torch.tensor([[42]]), torch.tensor([[0]]), torch.tensor([[0]]), 2**20)
    u = rng.uniform(bits).flatten()
    n = u.numel()
    assert abs(float(u.mean()) - 0.5) < 6 * math.sqrt(1 / 12 / n)
    assert abs(float(u.var()) - 1 / 12) < 6 * math.sqrt(1 / 180 / n)
    e = rng.exponential(bits).flatten()
    assert abs(float(e.mean()) - 1.0) < 6 / math.sqrt(n)
