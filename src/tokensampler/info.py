"""``tokensampler info``: versions, devices and which backends can run, and why not."""

from __future__ import annotations

import platform
from importlib import metadata

import torch

from . import __version__, dispatch


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def collect() -> dict:
    """Everything ``info`` prints, as plain data (the CLI's ``--json``)."""
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
    return "\n".join(lines)
