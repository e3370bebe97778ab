"""Backend choice: the one place that decides which implementation runs.

Precedence: the ``backend=`` argument, then the ``TOKENSAMPLER_BACKEND``
environment variable (read at each call, so tests and engines can flip it),
then the device: the reference backend for CPU tensors and for devices that
have no Triton backend yet.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Optional

import torch

from .errors import ArgumentError, BackendUnavailableError

ENV_VAR = "TOKENSAMPLER_BACKEND"
BACKENDS = ("reference", "triton")


def triton_status(device: Optional[torch.device] = None) -> tuple[bool, str]:
    """Whether the Triton backend can serve ``device``, and why not if it cannot."""
    return False, "the Triton kernels are not built yet (tracked as the kernel issue)"


def current_override() -> Optional[str]:
    """The backend named by the environment variable, or None."""
    return os.environ.get(ENV_VAR) or None


def _load(name: str) -> ModuleType:
    if name == "reference":
        from . import reference

        return reference
    ok, why = triton_status()
    if not ok:
        raise BackendUnavailableError(f"backend 'triton' is unavailable: {why}")
    raise AssertionError("unreachable")


def resolve(op: str, backend: Optional[str], device: torch.device) -> ModuleType:
    """The backend module that runs ``op`` on ``device``."""
    source = "argument 'backend'"
    if backend is None:
        backend = current_override()
        source = f"environment variable {ENV_VAR}"
    if backend is None:
        return _load("reference")
    if backend not in BACKENDS:
        raise ArgumentError(f"{op}: {source} must be one of {', '.join(map(repr, BACKENDS))} "
                            f"or unset, got {backend!r}")
    return _load(backend)
