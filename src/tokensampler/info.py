"""``tokensampler info``: versions, devices and which backends can run, and why not."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

import torch

from . import __version__, dispatch


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def check_kernels(devices: list[str]) -> dict[str, str]:
    """Run every op once on each accelerator through the automatic backend
    (:func:`tokensampler.warmup`), so that a device whose kernels cannot
    compile or launch falls back now; returns what happened per device."""
    import warnings

    from .errors import FallbackWarning
    from .ops import warmup

    results = {}
    for dev in devices:
        if dev == "cpu":
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FallbackWarning)
            try:
                report = warmup([1000], device=dev, per_row=(True,))
                seconds = sum(r["seconds"] for r in report)
                results[dev] = f"every op ran in each launch form ({seconds:.1f} s with compilation)"
            except Exception as exc:   # reported, not raised: info must finish
                results[dev] = f"failed: {type(exc).__name__}: {exc}"
        if dev in dispatch.fallbacks():
            results[dev] = "fell back to the reference backend"
    return results


def direct_launch() -> str:
    """Whether repeat calls launch kernels without Triton's argument binding
    (triton/launcher.py), and why not. Imports nothing."""
    setting = os.environ.get("TOKENSAMPLER_DIRECT_LAUNCH")
    if setting == "0":
        return "off (TOKENSAMPLER_DIRECT_LAUNCH=0)"
    if torch.version.hip and setting != "1":
        return ("off on ROCm unless TOKENSAMPLER_DIRECT_LAUNCH=1 (Triton may specialise "
                "on buffer size)")
    launcher = sys.modules.get("tokensampler.triton.launcher")
    if launcher is not None and not launcher.DIRECT:
        return "off (this Triton's launcher rejected a direct call; every launch goes through Triton)"
    return "on (repeat calls skip Triton's argument binding)"


def collect(check: bool = False) -> dict:
    """Everything ``info`` prints, as plain data (the CLI's ``--json``).
    ``check`` also runs the kernels once per accelerator (:func:`check_kernels`)."""
    devices = [{"device": "cpu", "name": platform.processor() or platform.machine()}]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices.append({"device": f"cuda:{i}", "name": props.name,
                            "multiprocessors": props.multi_processor_count,
                            "memory_gib": round(props.total_memory / 2**30, 1)})
    backends = {"reference": {"usable": True, "why": "pure PyTorch, runs on every device"}}
    for dev in devices:
        ok, why = dispatch.triton_status(torch.device(dev["device"]))
        backends[f"triton on {dev['device']}"] = {"usable": ok, "why": why}
    checks = check_kernels([d["device"] for d in devices]) if check else {}
    return {
        "tokensampler": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "numpy": _version("numpy"),
        "cuda_runtime": torch.version.cuda,
        "hip_runtime": getattr(torch.version, "hip", None),
        "devices": devices,
        "backends": backends,
        "backend_override": dispatch.current_override(),
        "direct_launch": direct_launch(),
        "kernel_checks": checks,
        "fallbacks": dispatch.fallbacks(),
    }


def render(report: dict) -> str:
    lines = [f"tokensampler {report['tokensampler']}"]
    for key in ("python", "torch", "triton", "numpy", "cuda_runtime", "hip_runtime"):
        lines.append(f"  {key:<13} {report[key]}")
    lines.append("devices")
    for dev in report["devices"]:
        extra = "".join(f", {k} {v}" for k, v in dev.items() if k not in ("device", "name"))
        lines.append(f"  {dev['device']:<13} {dev['name']}{extra}")
    lines.append("backends")
    for name, b in report["backends"].items():
        lines.append(f"  {name:<22} {'usable' if b['usable'] else 'unusable':<9} {b['why']}")
    override = report["backend_override"]
    lines.append(f"override ({dispatch.ENV_VAR}): {override or 'unset'}")
    lines.append(f"direct launches: {report['direct_launch']}")
    for device, what in report["kernel_checks"].items():
        lines.append(f"kernel check on {device}: {what}")
    for device, why in report["fallbacks"].items():
        lines.append(f"fallback on {device}: the reference backend runs instead of Triton: {why}")
    return "\n".join(lines)
