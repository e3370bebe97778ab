"""Backend choice: the one place that decides which implementation runs.

Precedence: the ``backend=`` argument, then the ``TOKENSAMPLER_BACKEND``
environment variable (read at each call, so tests and engines can flip it),
then the device: Triton kernels for GPU tensors when Triton can serve them,
the reference backend otherwise (CPU tensors always get the reference unless
the Triton backend is named: on the CPU it runs under Triton's interpreter,
which is for testing, not speed).
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType
from typing import Optional

import torch

from .errors import ArgumentError, ArgumentTypeError, BackendUnavailableError

ENV_VAR = "TOKENSAMPLER_BACKEND"
BACKENDS = ("reference", "triton")


def triton_status(device: Optional[torch.device] = None) -> tuple[bool, str]:
    """Whether the Triton backend can serve ``device``, and why not if it cannot.

    Cheap: looks at the environment, never compiles or launches anything.
    """
    if importlib.util.find_spec("triton") is None:
        return False, "triton is not installed (pip install triton)"
    device = torch.device("cpu") if device is None else torch.device(device)
    if device.type == "cpu":
        if os.environ.get("TRITON_INTERPRET") == "1":
            return True, "CPU tensors run under Triton's interpreter (TRITON_INTERPRET=1): slow, for tests"
        return False, "CPU tensors need TRITON_INTERPRET=1 set before import (interpreter, for tests)"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False, "torch sees no CUDA/ROCm device"
        return True, "Triton kernels for " + ("ROCm" if torch.version.hip else "CUDA")
    return False, f"no Triton support for device type {device.type!r}"


def current_override() -> Optional[str]:
    """The backend named by the environment variable, or None."""
    return os.environ.get(ENV_VAR) or None


def _load(name: str) -> ModuleType:
    if name == "reference":
        from . import reference

        return reference
    from . import triton as triton_backend

    return triton_backend


def resolve(op: str, backend: Optional[str], device: torch.device) -> ModuleType:
    """The backend module that runs ``op`` on ``device``."""
    source = "argument 'backend'"
    if backend is None:
        backend = current_override()
        source = f"environment variable {ENV_VAR}"
    if backend is None:
        auto = device.type != "cpu" and triton_status(device)[0]
        return _load("triton" if auto else "reference")
    if not isinstance(backend, str):
        raise ArgumentTypeError(f"{op}: {source} must be a string, one of "
                                f"{', '.join(map(repr, BACKENDS))}, or None; got "
                                f"{type(backend).__name__}")
    if backend not in BACKENDS:
        raise ArgumentError(f"{op}: {source} must be one of {', '.join(map(repr, BACKENDS))} "
                            f"or unset, got {backend!r}")
    if backend == "triton":
        ok, why = triton_status(device)
        if not ok:
            raise BackendUnavailableError(f"{op}: backend 'triton' cannot run on {device}: {why}")
    return _load(backend)
