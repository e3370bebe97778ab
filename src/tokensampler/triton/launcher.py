"""Every kernel launch of the Triton backend goes through :func:`launch`.

It names the stage the calling thread is in (``compile <kernel>`` on a cache
miss, then ``launch <kernel>``) for the watchdog's timeout message and for
:class:`~tokensampler.errors.BackendFailedError`, at the cost of one
attribute store per launch.
"""

from __future__ import annotations

import threading

import triton

from .. import watchdog

_local = threading.local()


def begin_call() -> None:
    """Forget the previous call's stage (called as each call starts)."""
    _local.stage = "prepare the launches"


def last_stage() -> str:
    """The stage this thread's current call reached."""
    return getattr(_local, "stage", "prepare the launches")


def _enter(name: str) -> None:
    _local.stage = name
    watchdog.stage(name)


def launch(kernel, grid, *args, **kwargs) -> None:
    """``kernel[grid](*args, **kwargs)``, with its stage recorded."""
    _enter(f"launch {kernel.fn.__name__}")
    kernel[grid](*args, **kwargs)


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
