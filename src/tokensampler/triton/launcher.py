"""Every kernel launch of the Triton backend goes through :func:`launch`.

It names the stage the calling thread is in (``compile <kernel>`` on a cache
miss, then ``launch <kernel>``) for the watchdog's timeout message and for
:class:`~tokensampler.errors.BackendFailedError`, at the cost of one
attribute store per launch.

It also keeps the launch cheap on the host. ``kernel[grid](...)`` binds and
specialises every argument and looks the variant up before it launches; a
sampler makes 2 to 10 launches, so at small batch that host time, not the
GPU, set the latency (measured: 28-47 us per launch on the H100 machine's
CPU). :func:`launch` keeps the compiled variant that Triton returned under a
key built from everything Triton specialises on (the device, each tensor's
dtype and 16-byte alignment, each integer's value class, the constexpr and
option keywords), and launches it directly on a hit. The key is finer than
Triton's own, never coarser: a miss only costs one ordinary launch, which
finds the variant in Triton's cache. Under the interpreter (CPU tensors)
every launch takes the ordinary path.
"""

from __future__ import annotations

import threading

import torch
import triton

from .. import watchdog

_local = threading.local()
# Set to False to make every launch take Triton's own path (benchmarks
# compare the two; tests check they give the same results).
fast_launch = True
int_pointers = True
_variants: dict = {}


def begin_call() -> None:
    """Forget the previous call's stage (called as each call starts)."""
    _local.stage = "prepare the launches"


def last_stage() -> str:
    """The stage this thread's current call reached."""
    return getattr(_local, "stage", "prepare the launches")


def _enter(name: str) -> None:
    _local.stage = name
    watchdog.stage(name)


def _int_class(v: int):
    # What Triton's specialisation can see of an integer: its type (i32, i64
    # or u64 by range), == 1, and divisibility by 16.
    return (v == 1, v % 16 == 0, -2**31 <= v < 2**31, v < 2**63)


def _key(kernel, args, kwargs, device: int, ptrs: list):
    spec = []
    for a in args:
        if isinstance(a, torch.Tensor):
            ptr = a.data_ptr()
            ptrs.append(ptr)
            spec.append((a.dtype, ptr % 16 == 0))
            continue
        ptrs.append(a)
        if isinstance(a, bool) or a is None:
            spec.append(a)
        elif isinstance(a, int):
            spec.append(_int_class(a))
        elif isinstance(a, float):
            spec.append(float)
        else:
            return None   # anything else: Triton's own path, every time
    return (kernel, device, tuple(spec), tuple(kwargs.items()))


def launch(kernel, grid, *args, **kwargs) -> None:
    """``kernel[grid](*args, **kwargs)``, with its stage recorded; on a GPU,
    a variant launched before with the same specialisation is launched
    directly (module docstring)."""
    _enter(f"launch {kernel.fn.__name__}")
    key = None
    if fast_launch and getattr(args[0], "is_cuda", False):
        driver = triton.runtime.driver.active
        device = driver.get_current_device()
        ptrs = []
        key = _key(kernel, args, kwargs, device, ptrs)
        hit = _variants.get(key) if key is not None else None
        if hit is not None:
            compiled, names = hit
            runtime = triton.knobs.runtime
            # Pointers go as integers: Triton's launcher would otherwise call
            # each tensor's data_ptr() and ask the driver about the pointer
            # again (params.py checked every tensor is on this device). A
            # launch hook (a profiler) gets the tensors.
            ints = int_pointers and runtime.launch_enter_hook is None
            full = (tuple(ptrs) if ints else args) + tuple(kwargs[n] for n in names)
            stream = driver.get_current_stream(device)
            grid3 = tuple(grid) + (1,) * (3 - len(grid))
            meta = compiled.launch_metadata(grid3, stream, *full)
            compiled.run(*grid3, stream, compiled.function, compiled.packed_metadata, meta,
                         runtime.launch_enter_hook, runtime.launch_exit_hook, *full)
            return
    compiled = kernel[grid](*args, **kwargs)
    if key is not None and hasattr(compiled, "run") and hasattr(compiled, "packed_metadata"):
        # The parameters after the positional ones, in signature order; every
        # kernel here passes them all by keyword (no defaults to fill in).
        names = tuple(p.name for p in kernel.params[len(args):])
        if all(n in kwargs for n in names):
            compiled._init_handles()
            _variants[key] = (compiled, names)


def _on_compile(fn=None, **_ignored):
    # Triton calls this on a cache miss, before compiling; returning a false
    # value lets the compilation go ahead.
    name = getattr(fn, "name", "a kernel")
    _enter(f"compile {name.rsplit('.', 1)[-1]} (first use of this specialisation)")
    return False


def _on_compiled(fn=None, **_ignored):
    name = getattr(fn, "name", "a kernel")
    _enter(f"launch {name.rsplit('.', 1)[-1]} (just compiled)")


def _install_hooks() -> None:
    """Hook Triton's compiler, unless the application already did (Triton
    has one slot per hook; we never take it from someone else)."""
    runtime = getattr(getattr(triton, "knobs", None), "runtime", None)
    if runtime is None:
        return   # an older Triton: stages read 'launch <kernel>' only
    for slot, hook in (("jit_cache_hook", _on_compile), ("jit_post_compile_hook", _on_compiled)):
        if hasattr(runtime, slot) and getattr(runtime, slot) is None:
            setattr(runtime, slot, hook)


_install_hooks()
