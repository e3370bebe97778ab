"""Shared test helpers (one place, so test files don't drift apart)."""

from __future__ import annotations

import pytest
import torch

from tokensampler import dispatch


DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def available_backends(device: torch.device = torch.device("cpu")) -> list[str]:
    """Backends that can run tensors on ``device`` here."""
    names = ["reference"]
    if dispatch.triton_status(device)[0]:
        names.append("triton")
    return names


def drawn_set(fn, x, *args, backend="reference", n=600, seed=1234, **kw) -> set[int]:
    """Tokens drawn by ``n`` independent outputs of row 0 of ``x``.

    With V <= 16 and every kept probability >= 1/8 (true of every hand-made
    case), missing a kept token has probability below 16 * (7/8)**600 < 1e-33:
    the drawn set is the kept set.

    The Triton interpreter runs about ten programs a second, so for
    ``backend="triton"`` the first ``TRITON_DRAWS`` outputs are checked token
    for token against the reference, whose full set is returned.
    """
    idx = torch.zeros(n, dtype=torch.int64, device=x.device)
    out = fn(x, *args, indices=idx, seed=seed, backend="reference", **kw)
    if backend != "reference":
        got = fn(x, *args, indices=idx[:TRITON_DRAWS], seed=seed, backend=backend, **kw)
        assert torch.equal(got, out[:TRITON_DRAWS]), (got.tolist(), out[:TRITON_DRAWS].tolist())
    return set(out.tolist())


TRITON_DRAWS = 8

# Random123's known-answer vectors for Philox4x32-10: (counter, key, output).
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def row(*values, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor([values], dtype=dtype)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread for the module: on a small shared machine OpenMP
    spinning with two threads is several times slower at these sizes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
