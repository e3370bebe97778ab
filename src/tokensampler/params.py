"""Argument checking and normalisation, done once for every backend.

The public functions turn their arguments into a :class:`SamplingCall` or a
:class:`FilterCall` here; backends receive only these, already checked:

* scalar parameters become Python numbers rounded to float32 (what a kernel
  receives), or ``None`` when the value disables the filter;
* per-request parameters stay tensors of shape ``(N,)`` (float32 or int64);
  their values are checked here when they live on the CPU, and on an
  accelerator the backend marks a row with an out-of-range value invalid
  instead, since checking there would cost a host synchronisation;
* seed and offset become int64 tensors of shape ``(1,)`` or ``(N,)`` on the
  input's device (drawn from the generator when no seed is given).
"""

from __future__ import annotations

import math
import numbers
import struct
from dataclasses import dataclass
from typing import NamedTuple, Optional, Union

import torch

from .errors import ArgumentError, ArgumentTypeError

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
FILTER_ORDERS = ("top_k_first", "joint")
FLOAT32_MAX = 3.4028234663852886e38

Number = Union[int, float]
Param = Union[int, float, torch.Tensor, None]


class SamplingCall(NamedTuple):
    """A checked sampling request. ``N`` outputs, each from row ``indices[j]``.
    (A named tuple, not a frozen dataclass: made at every call, and a frozen
    dataclass of 13 fields took 2.5 µs of host time to make on a GPU
    machine's CPU, sixteenth session.)"""

    op: str
    x: torch.Tensor                   # (B, V) probs or logits, native dtype
    from_logits: bool
    indices: Optional[torch.Tensor]   # (N,) int64, or None for arange(B)
    top_k: Param                      # int | (N,) int64 | None (disabled)
    top_p: Param                      # float | (N,) float32 | None
    min_p: Param                      # float | (N,) float32 | None
    temperature: Param                # float | (N,) float32 (logits only)
    joint: bool                       # filter_apply_order == "joint"
    seed: torch.Tensor                # (1,) or (N,) int64
    offset: torch.Tensor              # (1,) or (N,) int64
    seed_per_output: bool             # stream = 0 instead of the position
    want_valid: bool = True           # the caller reads the valid flags

    @property
    def num_outputs(self) -> int:
        return self.x.shape[0] if self.indices is None else self.indices.shape[0]


@dataclass(frozen=True)
class FilterCall:
    """A checked renorm / mask / softmax request, one output row per input row."""

    op: str
    x: torch.Tensor
    from_logits: bool
    top_k: Param = None
    top_p: Param = None
    temperature: Param = None


def _fail(op: str, name: str, expected: str, got) -> ArgumentError:
    return ArgumentError(f"{op}: argument '{name}' must be {expected}, got {got}")


def _type_fail(op: str, name: str, expected: str, got) -> ArgumentTypeError:
    return ArgumentTypeError(f"{op}: argument '{name}' must be {expected}, got {got}")


def _describe(t: torch.Tensor) -> str:
    return f"a tensor of shape {tuple(t.shape)}, dtype {t.dtype}, on {t.device}"


_F32 = struct.Struct("f")


def f32(value: float) -> float:
    """Round a Python float to the nearest float32, the precision kernels use.
    Raises OverflowError where the rounding gives an infinity from a finite
    value (the caller takes it as that infinity). ``struct`` rounds as a C
    cast does, to nearest even, at a tenth of the cost of a tensor."""
    return _F32.unpack(_F32.pack(value))[0]


MAX_VOCAB = 1 << 29


def check_input(op: str, name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise _type_fail(op, name, "a torch.Tensor of shape (batch, vocab)", type(x).__name__)
    if x.dtype not in FLOAT_DTYPES:
        raise _type_fail(op, name, "float32, float16 or bfloat16", x.dtype)
    if x.dim() != 2:
        raise _fail(op, name, "2-D (batch, vocab)", _describe(x))
    if x.shape[1] == 0:
        raise _fail(op, name, "at least one column (vocab >= 1)", _describe(x))
    if x.shape[1] > MAX_VOCAB:
        # The random stream numbers tokens below 2**27 Philox calls (rng.py).
        raise _fail(op, name, f"at most 2**29 = {MAX_VOCAB} columns", _describe(x))
    return x


def _per_row(op, name, t: torch.Tensor, n: int, device, integer: bool,
             unit: str = "output") -> torch.Tensor:
    if integer and (t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool):
        raise _type_fail(op, name, "an int or an integer tensor", f"dtype {t.dtype}")
    if not integer and not t.dtype.is_floating_point:
        raise _type_fail(op, name, "a float or a floating-point tensor", f"dtype {t.dtype}")
    if t.dim() != 1 or t.shape[0] != n:
        raise _fail(op, name, f"a number or a tensor of shape ({n},), one value per {unit}",
                    _describe(t))
    if t.device != device:
        raise _fail(op, name, f"on the input's device {device}", f"a tensor on {t.device}")
    # Kernels read element j at base + j: a strided view is copied once.
    return t.to(torch.int64 if integer else torch.float32).contiguous()


def _bad_values(t: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return torch.isnan(t) | (t < lo) | (t > hi)


def _is_real(value) -> bool:
    # numbers.Real covers Python and numpy scalars; bool is an Integral but never a parameter.
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, torch.Tensor))


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, torch.Tensor))


def float_param(op: str, name: str, value, n: int, device, lo: float, hi: float,
                expected: str, unit: str = "output") -> Union[float, torch.Tensor]:
    """A float parameter: a number in [lo, hi] or a per-output (per-row) tensor."""
    if isinstance(value, torch.Tensor):
        t = _per_row(op, name, value, n, device, integer=False, unit=unit)
        if t.device.type == "cpu":
            bad = _bad_values(t, lo, hi)
            if bool(bad.any()):
                i = int(bad.nonzero()[0, 0])
                raise _fail(op, f"{name}[{i}]", expected, float(t[i]))
        return t
    if not _is_real(value):
        raise _type_fail(op, name, f"a float or a tensor of shape ({n},)", type(value).__name__)
    # Checked after rounding to float32, as tensors are, so a value means the
    # same whether it comes as a number or in a tensor.
    try:
        v = f32(float(value))
    except OverflowError:  # an int beyond float64: as far out as it gets
        v = math.inf if value > 0 else -math.inf
    if math.isnan(v) or not lo <= v <= hi:
        raise _fail(op, name, expected, value)
    return v


def top_k_param(op: str, value, n: int, vocab: int, device,
                unit: str = "output") -> Union[int, torch.Tensor, None]:
    if isinstance(value, torch.Tensor):
        return _per_row(op, "top_k", value, n, device, integer=True, unit=unit)
    if not _is_integer(value):
        raise _type_fail(op, "top_k", f"an int or an integer tensor of shape ({n},)",
                         type(value).__name__)
    return None if value <= 0 or value >= vocab else int(value)


def top_p_param(op: str, value, n: int, device, unit: str = "output"):
    p = float_param(op, "top_p", value, n, device, 0.0, 1.0, "in [0, 1]", unit)
    return None if isinstance(p, float) and p >= 1.0 else p


def min_p_param(op: str, value, n: int, device):
    p = float_param(op, "min_p", value, n, device, -math.inf, 1.0, "at most 1 (<= 0 disables)")
    return None if isinstance(p, float) and p <= 0.0 else p


def temperature_param(op: str, value, n: int, device, unit: str = "output"):
    if value is None:
        return 1.0
    return float_param(op, "temperature", value, n, device, 0.0, FLOAT32_MAX,
                       "in [0, 3.4e38], finite in float32 (0 means greedy)", unit)


def _int64_bits(op: str, name: str, value: int) -> int:
    if not -(2**63) <= value < 2**64:
        raise _fail(op, name, "in [-2**63, 2**64)", value)
    return value - 2**64 if value >= 2**63 else value


def seed_param(op: str, name: str, value, n: int, device) -> torch.Tensor:
    """An int, or an integer tensor of shape (1,) or (n,), as int64 on ``device``."""
    if isinstance(value, torch.Tensor):
        if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
            raise _type_fail(op, name, "an int or an int64/uint64 tensor", f"dtype {value.dtype}")
        if value.dim() != 1 or value.shape[0] not in (1, n):
            raise _fail(op, name, f"an int or a tensor of shape (1,) or ({n},)", _describe(value))
        if value.device != device:
            raise _fail(op, name, f"on the input's device {device}", f"a tensor on {value.device}")
        if value.dtype == torch.int64 and value.is_contiguous():
            return value   # the common case, without two no-op tensor calls
        if value.dtype == torch.uint64:
            return value.contiguous().view(torch.int64)
        return value.to(torch.int64).contiguous()
    if not _is_integer(value):
        raise _type_fail(op, name, "an int or an integer tensor", type(value).__name__)
    value = _int64_bits(op, name, int(value))
    if value == 0:
        return _zero_offset(device)
    # A fill launch, not torch.tensor: that copies from pageable host memory
    # and synchronises the stream (and so cannot be captured in a graph).
    return torch.full((1,), value, dtype=torch.int64, device=device)


def draw_seed(op: str, generator: Optional[torch.Generator], device) -> torch.Tensor:
    """A fresh 63-bit seed from ``generator`` (or the device's default), on the device.

    Drawn with ``torch.randint`` on the device itself, so no host synchronisation
    happens and CUDA-graph capture works (torch's generators support capture).
    """
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise _type_fail(op, "generator", "a torch.Generator or None", type(generator).__name__)
        if generator.device.type != torch.device(device).type:
            raise _fail(op, "generator", f"a generator for {device}", f"one for {generator.device}")
    return torch.randint(0, 2**63 - 1, (1,), dtype=torch.int64, device=device,
                         generator=generator)


_zeros: dict = {}   # device -> a (1,) int64 zero that kernels only read


def _zero_offset(device) -> torch.Tensor:
    """The default offset (and any int seed or offset 0). One tensor per
    device, kept (a fresh one cost a memset launch, 9 µs of host time, each
    call), except while a CUDA graph is being captured: a tensor allocated
    then belongs to the graph's pool."""
    zero = _zeros.get(device)
    if zero is None:
        zero = torch.zeros(1, dtype=torch.int64, device=device)
        if device.type != "cuda":
            _zeros[device] = zero
        elif not torch.cuda.is_current_stream_capturing():
            # Once: its memset ran on this stream, and a call on another
            # stream may read it next (independent review, thirteenth session).
            torch.cuda.current_stream(device).synchronize()
            _zeros[device] = zero
    return zero


def indices_param(op: str, indices, batch: int, device) -> Optional[torch.Tensor]:
    if indices is None:
        return None
    if not isinstance(indices, torch.Tensor):
        raise _type_fail(op, "indices", "None or an int32/int64 tensor", type(indices).__name__)
    if indices.dtype not in (torch.int32, torch.int64):
        raise _type_fail(op, "indices", "int32 or int64", f"dtype {indices.dtype}")
    if indices.dim() != 1:
        raise _fail(op, "indices", "1-D (num_outputs,)", _describe(indices))
    if indices.device != device:
        raise _fail(op, "indices", f"on the input's device {device}", f"a tensor on {indices.device}")
    if indices.device.type == "cpu" and indices.numel():
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= batch:
            raise _fail(op, "indices", f"row ids in [0, {batch})", f"values in [{lo}, {hi}]")
    return indices.to(torch.int64).contiguous()


def check_nan(op: str, name: str, x: torch.Tensor) -> None:
    """FlashInfer's ``check_nan=True``: a deliberate host sync that raises on NaN."""
    rows = torch.isnan(x).any(dim=1).nonzero().flatten()
    if rows.numel():
        shown = ", ".join(str(int(r)) for r in rows[:8])
        raise _fail(op, name, "free of NaN (check_nan=True)", f"NaN in row(s) {shown}"
                    + (" ..." if rows.numel() > 8 else ""))


def sampling_call(op: str, x, *, from_logits: bool, indices=None, top_k=None, top_p=None,
                  min_p=None, temperature=None, filter_apply_order: str = "top_k_first",
                  generator=None, check_nan_: bool = False, seed=None,
                  offset=None, want_valid: bool = True) -> SamplingCall:
    name = "logits" if from_logits else "probs"
    x = check_input(op, name, x)
    batch, vocab = x.shape
    device = x.device
    idx = indices_param(op, indices, batch, device)
    n = batch if idx is None else idx.shape[0]
    if filter_apply_order not in FILTER_ORDERS:
        raise _fail(op, "filter_apply_order", "'top_k_first' or 'joint'", repr(filter_apply_order))
    k = None if top_k is None else top_k_param(op, top_k, n, vocab, device)
    p = None if top_p is None else top_p_param(op, top_p, n, device)
    m = None if min_p is None else min_p_param(op, min_p, n, device)
    t = temperature_param(op, temperature, n, device) if from_logits else None
    if check_nan_:
        check_nan(op, name, x)
    if seed is None:
        seed_t = draw_seed(op, generator, device)
    else:
        seed_t = seed_param(op, "seed", seed, n, device)
    offset_t = (_zero_offset(device) if offset is None
                else seed_param(op, "offset", offset, n, device))
    per_output = seed_t.shape[0] == n and n > 1
    return SamplingCall(op, x, from_logits, idx, k, p, m, t, filter_apply_order == "joint",
                        seed_t, offset_t, per_output, want_valid)


def filter_call(op: str, x, *, from_logits: bool, top_k=None, top_p=None,
                temperature=None) -> FilterCall:
    x = check_input(op, "logits" if from_logits else "probs", x)
    batch, vocab = x.shape
    k = None if top_k is None else top_k_param(op, top_k, batch, vocab, x.device, "row")
    p = None if top_p is None else top_p_param(op, top_p, batch, x.device, "row")
    t = temperature_param(op, temperature, batch, x.device, "row") if from_logits else None
    return FilterCall(op, x, from_logits, k, p, t)
