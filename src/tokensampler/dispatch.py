"""Backend choice: the one place that decides which implementation runs.

Precedence: the ``backend=`` argument, then the ``TOKENSAMPLER_BACKEND``
environment variable (read at each call, so tests and engines can flip it),
then the device: Triton kernels for GPU tensors when Triton can serve them,
the reference backend otherwise (CPU tensors always get the reference unless
the Triton backend is named: on the CPU it runs under Triton's interpreter,
which is for testing, not speed).

Fallback: when the backend was chosen automatically and the Triton kernels
fail to import, compile or launch on a device (no compiler, unsupported GPU,
a driver error Triton reports; :func:`kernel_failure`), that device falls back to the reference backend for the rest of the
process, with one :class:`~tokensampler.errors.FallbackWarning` that says why;
:func:`fallbacks` (and ``tokensampler info``) lists it. A backend named by the
argument or the environment variable never falls back: its failure raises
:class:`~tokensampler.errors.BackendFailedError` with the cause chained.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import warnings
from types import ModuleType
from typing import Optional

import torch

from . import watchdog
from .errors import (ArgumentError, ArgumentTypeError, BackendFailedError,
                     BackendUnavailableError, FallbackWarning)

ENV_VAR = "TOKENSAMPLER_BACKEND"
BACKENDS = ("reference", "triton")

_fallbacks: dict[str, str] = {}   # device -> why Triton failed there (this process)
_fallback_lock = threading.Lock()


def fallbacks() -> dict[str, str]:
    """Devices whose automatic backend fell back to the reference, and why."""
    with _fallback_lock:
        return dict(_fallbacks)


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
        return False, ("on CPU tensors the kernels run only under Triton's interpreter, for "
                       "tests (set TRITON_INTERPRET=1 before importing); the CPU's backend is "
                       "'reference', which backend=None picks")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False, "torch sees no CUDA/ROCm device"
        return True, "Triton kernels for " + ("ROCm" if torch.version.hip else "CUDA")
    return False, f"no Triton support for device type {device.type!r}"


_serves: dict[str, bool] = {}   # accelerator type -> triton_status(...)[0], fixed for a process


def _kernels_serve(device: torch.device) -> bool:
    """Whether the automatic choice is Triton: on accelerators where it can run."""
    if device.type == "cpu":
        return False
    serves = _serves.get(device.type)
    if serves is None:
        serves = _serves[device.type] = triton_status(device)[0]
    return serves


def current_override() -> Optional[str]:
    """The backend named by the environment variable, or None."""
    return os.environ.get(ENV_VAR) or None


_modules: dict[str, ModuleType] = {}


def load(name: str) -> ModuleType:
    """The backend module called ``name`` (imported on first use)."""
    module = _modules.get(name)
    if module is None:
        if name == "reference":
            from . import reference as module
        else:
            from . import triton as module
        _modules[name] = module
    return module


def choose(op: str, backend: Optional[str], device: torch.device) -> tuple[str, bool]:
    """The name of the backend that runs ``op`` on ``device``, and whether it
    was chosen automatically (only then may it fall back). Imports nothing."""
    source = "argument 'backend'"
    if backend is None:
        backend = current_override()
        source = f"environment variable {ENV_VAR}"
    if backend is None:
        auto = str(device) not in _fallbacks and _kernels_serve(device)
        return ("triton" if auto else "reference"), True
    if not isinstance(backend, str):
        raise ArgumentTypeError(f"{op}: {source} must be a string, one of "
                                f"{', '.join(map(repr, BACKENDS))}, or None; got "
                                f"{type(backend).__name__}")
    if backend not in BACKENDS:
        raise ArgumentError(f"{op}: {source} must be one of {', '.join(map(repr, BACKENDS))} "
                            f"or unset, got {backend!r}")
    # On an accelerator the answer is fixed for the process: checked once
    # (triton_status's find_spec took 4-30 µs a call, on every call naming
    # the backend). On the CPU it follows TRITON_INTERPRET, checked each time.
    if backend == "triton" and not (device.type != "cpu" and _serves.get(device.type)):
        ok, why = triton_status(device)
        if not ok:
            raise BackendUnavailableError(f"{op}: backend 'triton' cannot run on {device}: {why}")
        if device.type != "cpu":
            _serves[device.type] = True
    return backend, False


def resolve(op: str, backend: Optional[str], device: torch.device) -> tuple[ModuleType, bool]:
    """The backend module :func:`choose` names, and whether it was automatic."""
    name, auto = choose(op, backend, device)
    return load(name), auto


def kernel_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the Triton kernels cannot run here: the backend
    would not import, Triton's compiler or launcher failed (its own error
    types, or a driver error it reports as 'Triton Error'), or a compiler
    binary could not be run. Anything else is a bug to raise, not hide."""
    if isinstance(exc, (ImportError, OSError, subprocess.SubprocessError)):
        return True
    if type(exc).__module__.split(".")[0] == "triton":
        return True
    return isinstance(exc, RuntimeError) and "Triton Error" in str(exc)


def run(op: str, backend: Optional[str], device: torch.device, method: str, call):
    """Choose the backend and run ``method`` (``sample``, ``renorm``, ...) on
    ``call``, falling back from an automatically chosen Triton backend whose
    import, compilation or launch fails (:func:`kernel_failure`)."""
    name, auto = choose(op, backend, device)
    watchdog.note(backend=name)
    if name == "reference":
        watchdog.stage("run the reference backend")
        return getattr(load(name), method)(call)
    stage = "import the Triton backend"
    try:
        watchdog.stage(stage)
        module = load(name)
        module.launcher.begin_call()   # it records the stages from here on
        stage = None
        return getattr(module, method)(call)
    except Exception as exc:
        if not kernel_failure(exc):
            raise
        lines = str(exc).strip().splitlines()
        why = f"{type(exc).__name__}: {lines[0] if lines else '(no message)'}"
        stage = stage or load("triton").launcher.last_stage()
        if not auto:
            raise BackendFailedError(
                f"{op}: backend 'triton' failed on {device} at stage '{stage}': {why}. "
                f"The automatic choice (backend=None) would fall back to the reference "
                f"backend; `tokensampler doctor` checks each stage.") from exc
        failure = f"{op} failed at stage '{stage}': {why}"
    watchdog.note(backend="reference (fallback)")
    watchdog.stage("run the reference backend (fallback)")
    result = getattr(load("reference"), method)(call)
    # Recorded only once the reference has worked: an error that breaks both
    # (a CUDA context already lost) is raised above, not blamed on Triton.
    _fall_back(device, failure)
    return result


def _fall_back(device: torch.device, why: str) -> None:
    with _fallback_lock:
        first = str(device) not in _fallbacks
        _fallbacks.setdefault(str(device), why)
    if first:
        warnings.warn(f"tokensampler: Triton kernels cannot run on {device} ({why}); "
                      f"falling back to the reference backend (pure PyTorch, slower) on this "
                      f"device for the rest of the process. Pass backend='triton' to get the "
                      f"error instead, or run `tokensampler doctor`.",
                      FallbackWarning, stacklevel=_caller_level())


def _caller_level() -> int:
    """The stacklevel of the first frame outside tokensampler (the caller's
    line, when the call runs on the caller's thread)."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level
