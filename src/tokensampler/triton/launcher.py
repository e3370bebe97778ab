"""Every kernel launch of the Triton backend goes through :func:`launch`.

It names the stage the calling thread is in (``compile <kernel>`` on a cache
miss, then ``launch <kernel>``) for the watchdog's timeout message and for
:class:`~tokensampler.errors.BackendFailedError`.

It also skips Triton's per-launch argument binding where that is safe. On
the H200 machine's CPU, ``kernel[grid](...)`` costs 30 µs of host time for a
kernel of 40 arguments, of which the compiled variant's own launcher takes
9 µs: the rest is Triton working out, from every argument, which compiled
variant to run (benchmarks/host_paths.py, tenth session). Small batches wait
for exactly that host time. So a call declares, with :func:`plan`, a key that
fixes the dtype and 16-byte alignment of each caller tensor it will pass; its
n-th launch is then remembered under (key, device, n). On the next call with
that key the remembered variant is launched directly, provided the launch is
the same kernel with equal compile-time arguments, its arguments have the
same Python types, and its integer arguments fall in the same
specialisation classes (value 1, multiple of 16, 32 or 64 bits), and
Triton's debug and instrumentation settings are as they were. Any mismatch
takes Triton's own path and remembers its answer. A caller whose key also fixes
every argument's Python type and every int argument's class says so
(``plan(key, complete=True)``): its proven sites then launch with none of
these checks, which cost about 3 µs of Python a launch of 40 arguments
(twelfth session; the samplers make 3 to 5 launches a call). Without a key
(``plan(None)``), under the interpreter, while a launch hook or a kernel's
pre-run hook is set (a profiler), and with ``TOKENSAMPLER_DIRECT_LAUNCH=0``,
every launch takes Triton's path. What it skips besides: Triton's check
that the globals a kernel read at compile time are unchanged (ours read
module constants only).

A complete key whose previous call launched every one of its launches
directly is *ready* (:func:`ready`): its caller may pass each tensor as its
address, an int, which Triton's C launcher takes as it is, where a tensor
costs a ``data_ptr()`` call and a driver query of the pointer. On the H200
machine's CPU that was 3 to 4.5 µs of a 8-10 µs launch of 12-16 pointers
(benchmarks/launch_cost.py, sixteenth session). A ready call's launches go
through the list of variants its key's previous call used, with no lookup
by key. On Triton 3.6, whose Python wrapper around the C launcher only
allocates scratch memory that our kernels do not use, the C function is
called directly (:func:`_c_launch`): another 0.8-1.5 µs a launch.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
import triton

from .. import watchdog


class _Local(threading.local):
    # Defaults, so that a launch reads attributes, not getattr(..., None).
    collect = None   # warmup's compile pass: where launches are recorded
    key = None       # the current call's key (plan)
    program = None   # a ready call's sites (plan)
    used = None      # the sites this call launched directly, while all were
    step = 0         # the call's launches so far
    stage = "prepare the launches"


_local = _Local()
# (call key, device, launch number) -> _Site. Bounded: cleared when full (a
# cleared site costs one Triton-path launch to relearn).
_sites: dict = {}
MAX_SITES = 4096
# (call key, device) -> the sites, in launch order, of a call under that key
# whose every launch went directly: the next call with that key is ready.
_programs: dict = {}
# TOKENSAMPLER_DIRECT_LAUNCH=0 sends every launch through Triton's own path.
# Off by default on ROCm: Triton's AMD backend can also specialise a tensor
# on its storage fitting 2 GB (buffer ops), which neither a key nor the
# checks here look at (independent review, twelfth session); =1 turns it on.
DIRECT = os.environ.get("TOKENSAMPLER_DIRECT_LAUNCH", "0" if torch.version.hip else "1") != "0"
# Launches of calls with a key, by path (tests look at them); "ready": those
# of the direct ones made by a ready call (addresses allowed).
counts = {"direct": 0, "triton": 0, "ready": 0}
_knobs = getattr(getattr(triton, "knobs", None), "runtime", None)
_OPTIONS = frozenset(("num_warps", "num_stages", "num_ctas", "maxnreg"))


def begin_call() -> None:
    """Forget the previous call's stage and key (called as each call starts)."""
    _local.stage = "prepare the launches"
    _local.key = None
    _local.program = _local.used = None


def last_stage() -> str:
    """The stage this thread's current call reached."""
    return _local.stage


def plan(key, complete: bool = False) -> None:
    """Declare the launches that follow (until ``plan(None)`` or the next
    :func:`begin_call`) as one call's, under ``key``: a hashable value that
    must determine the dtype and the 16-byte alignment of every tensor the
    launches receive that the caller did not allocate itself (the input,
    per-request parameters, seeds). Everything else is checked at each
    launch, unless ``complete``: the key then also determines each launch's
    kernel, compile-time arguments, the Python type of every argument and
    the class of every int argument (:func:`_int_classes`), and a launch
    already made once under it goes straight to its variant. ``None``: no
    reuse."""
    _local.complete = False
    if key is not None:
        _local.device, _local.stream = _device_and_stream()
        # Settings Triton reads at each launch to choose a variant (debug,
        # instrumentation): a change gives new sites, so Triton chooses again.
        compilation = getattr(getattr(triton, "knobs", None), "compilation", None)
        key = (key, getattr(_knobs, "debug", None),
               getattr(compilation, "instrumentation_mode", None),
               getattr(compilation, "fpsan_homomorphic_casts", None))
        # Hooks are looked at once a call on the complete path (a profiler
        # set between two launches of one call waits for the next call).
        _local.complete = (complete and DIRECT and _knobs is not None
                           and _idle(_knobs.launch_enter_hook)
                           and _idle(_knobs.launch_exit_hook))
    _local.key = key
    _local.step = 0
    # A ready call launches its key's program; any other keyed call records
    # the sites it launches directly, to make one. A kernel given a pre-run
    # hook since (a profiler's) sends the call through the checked path,
    # which gives such launches to Triton.
    # Warmup's compile pass (collecting) records the launches for Triton's
    # compiler, which must see tensors: never ready then.
    program = (_programs.get((key, _local.device))
               if _local.complete and _local.collect is None else None)
    if program is not None and any(getattr(site.kernel, "pre_run_hooks", None)
                                   for site in program):
        program = None
    _local.program = program
    _local.used = [] if _local.complete and program is None else None


def ready() -> bool:
    """Whether the call planned last (:func:`plan`) is ready: a complete key
    whose previous call launched all its launches directly. Its launches
    may then take tensors as their addresses (``data_ptr()``, an int), and
    must be the same launches, in the same order, as that call's (the key
    fixes them). An address is not checked by the driver as a tensor is:
    the tensors must be on the launch's device (the public functions check
    that; a caller of a backend's ``sample`` must too). Never ready while
    collecting (warmup's compile pass)."""
    return _local.program is not None


def finish() -> None:
    """The planned call made all its launches: if each went directly, its
    key's next call is ready. Not called for a call that raised."""
    program = _local.program
    if program is not None and _local.step != len(program):
        raise RuntimeError(f"tokensampler: a ready call made {_local.step} launches where its "
                           f"key's previous call made {len(program)}: the call's key does "
                           f"not fix its launches")
    used = _local.used
    if used and len(used) == _local.step:
        if len(_programs) >= MAX_SITES:
            _programs.clear()
        _programs[(_local.key, _local.device)] = tuple(used)
    _local.used = None


def _device_and_stream():
    # What Triton's own path launches on: the current device and its stream.
    driver = triton.runtime.driver.active
    device = driver.get_current_device()
    return device, driver.get_current_stream(device)


class _Site:
    __slots__ = ("kernel", "kwargs", "kwargs_given", "types", "ints", "compiled", "run",
                 "function", "meta", "tail", "stage", "proven", "c", "c_head")

    def __init__(self, kernel, kwargs, types, ints, compiled, tail, stage):
        self.kernel, self.types, self.ints = kernel, types, ints
        # A copy to compare with, and the caller's dict itself: the samplers
        # pass their layout's, so a ready launch checks it by identity.
        self.kwargs, self.kwargs_given = dict(kwargs), kwargs
        self.tail, self.stage = tail, stage
        # Held: Triton unloads a compiled variant's module when it is freed.
        self.compiled = compiled
        self.run = compiled.run
        self.function = compiled.function
        self.meta = compiled.packed_metadata
        self.proven = False   # launched directly once without a TypeError
        # (the C launcher, the wrapper's arguments before the kernel's), or None
        self.c, self.c_head = _c_launch(compiled.run, compiled.packed_metadata)


# Triton releases whose CudaLauncher.__call__ is known to do no more, for a
# kernel without scratch memory, than ``self.launch(gridX, gridY, gridZ,
# stream, function, self.launch_cooperative_grid, self.launch_pdl, None,
# None, *args)``: Triton 3.6's (read in its source; 3.9's passes other
# arguments). Elsewhere the wrapper is called as Triton calls it.
C_LAUNCH_RELEASES = ("3.6.",)
_WRAPPER_PARAMS = ["self", "gridX", "gridY", "gridZ", "stream", "function", "args"]


def _c_launch(run, meta):
    """(Triton's C launch function, the arguments the wrapper ``run`` puts
    between the stream and the kernel's own) where :data:`C_LAUNCH_RELEASES`
    says the wrapper adds nothing else for this kernel, else (None, None)."""
    import inspect
    if (not triton.__version__.startswith(C_LAUNCH_RELEASES)
            or type(run).__name__ != "CudaLauncher"
            or getattr(run, "global_scratch_size", 1) != 0
            or getattr(run, "profile_scratch_size", 1) != 0
            or not callable(getattr(run, "launch", None))):
        return None, None
    try:
        params = list(inspect.signature(type(run).__call__).parameters)
    except (TypeError, ValueError):
        return None, None
    coop = getattr(run, "launch_cooperative_grid", None)
    pdl = getattr(run, "launch_pdl", None)
    if params != _WRAPPER_PARAMS or coop is None or pdl is None:
        return None, None
    # After the function: cooperative grid, PDL, the two scratch pointers,
    # then what the wrapper passes on: metadata, launch metadata, two hooks.
    return run.launch, (coop, pdl, None, None, meta, None, None, None)


def _int_classes(args) -> tuple:
    # Triton specialises an int argument on == 1 and on divisibility by 16,
    # and types it i32, i64 or u64 by range: one class number covers all four.
    return tuple((a == 1) | ((a & 15) == 0) << 1 | (not -0x80000000 <= a < 0x80000000) << 2
                 | (a >= 1 << 63) << 3 for a in args if type(a) is int)


def int_class(a: int) -> int:
    """The class of one int argument (:func:`_int_classes`), for a key."""
    return _int_classes((a,))[0]


def current_stream():
    """The stream this thread's keyed call launches on (after :func:`plan`)."""
    return _local.stream


def _idle(hook) -> bool:
    # A launch hook is unset: None, or (Triton 3.5 on) a HookChain holding no
    # hook. The direct path then passes None, which the launcher skips.
    return hook is None or getattr(hook, "calls", None) == []


def _enter(name: str) -> None:
    _local.stage = name
    watchdog.stage(name)


def launch(kernel, grid, *args, **kwargs) -> None:
    """``kernel[grid](*args, **kwargs)``, with its stage recorded, launched
    directly where this call's key has seen the same launch before."""
    launch_with(kernel, grid, args, kwargs)


def launch_with(kernel, grid, args: tuple, kwargs: dict) -> None:
    """:func:`launch` with the arguments as a tuple and the keywords as a
    dict (not changed, and not kept: a copy is). The samplers keep each
    launch's keywords in its layout: passed as ``**kwargs``, 20 of them
    made a new dict at every launch, 1.2 µs of host time here (2-core CPU)
    and more on the GPU machines'."""
    global DIRECT
    sink = _local.collect
    if sink is not None:
        sink.append((kernel, grid, args, kwargs))   # warmup's compile pass: no launch
        return
    key = _local.key
    if key is None:
        _enter(f"launch {kernel.fn.__name__}")
        kernel[grid](*args, **kwargs)
        return
    step = _local.step
    _local.step = step + 1
    program = _local.program
    if program is not None:
        # A ready call: its arguments may be addresses, which only the
        # remembered variants take. The key fixes the launches, so a
        # mismatch is a bug in the caller's key, not a case to handle.
        site = program[step] if step < len(program) else None
        if site is None or site.kernel is not kernel or not (
                kwargs is site.kwargs_given or kwargs == site.kwargs):
            raise RuntimeError(f"tokensampler: launch {step} of a ready call "
                               f"({kernel.fn.__name__}) is not the one its key's previous "
                               f"call made: the call's key does not fix its launches")
        if getattr(kernel, "pre_run_hooks", None):
            # Its arguments are addresses, which Triton's own path cannot take.
            raise RuntimeError(f"tokensampler: a pre-run hook was added to "
                               f"{kernel.fn.__name__} while a call was launching it "
                               f"(between its first and its last launch); hooks added "
                               f"between calls are honoured. Call it again.")
        _enter(site.stage)
        counts["direct"] += 1
        counts["ready"] += 1
        _run(site, grid, args)
        return
    where = (key, _local.device, step)
    site = _sites.get(where)
    used = _local.used
    if (site is not None and site.proven and _local.complete and site.kernel is kernel
            and not getattr(kernel, "pre_run_hooks", None)):
        _enter(site.stage)
        counts["direct"] += 1
        _run(site, grid, args)
        if used is not None:
            used.append(site)
        return
    types = tuple(map(type, args))
    ints = _int_classes(args)
    if (DIRECT and site is not None and site.kernel is kernel and site.types == types
            and site.ints == ints and site.kwargs == kwargs and _idle(_knobs.launch_enter_hook)
            and _idle(_knobs.launch_exit_hook) and not getattr(kernel, "pre_run_hooks", None)):
        _enter(site.stage)
        counts["direct"] += 1
        if site.proven:
            _run(site, grid, args)
        elif _proven(site, grid, args):
            site.proven = True
        else:
            # This Triton's launcher takes other arguments: never again.
            DIRECT = False
            _sites.clear()
            _programs.clear()
            counts["direct"] -= 1
        if site.proven:
            if used is not None:
                used.append(site)
            return
    _local.used = None   # not every launch of this call goes directly
    counts["triton"] += 1
    stage = f"launch {kernel.fn.__name__}"
    _enter(stage)
    compiled = kernel[grid](*args, **kwargs)
    if not DIRECT or _knobs is None or not hasattr(compiled, "packed_metadata"):
        return   # the interpreter, or a Triton without the launcher this relies on
    params = kernel.params[len(args):]
    if any(not p.is_constexpr and p.name not in kwargs for p in params) or any(
            k not in _OPTIONS and k not in {p.name for p in params} for k in kwargs):
        return   # an argument this path would not pass (defaulted, or keyword)
    tail = tuple(kwargs[p.name] if p.name in kwargs else p.default for p in params)
    if len(_sites) >= MAX_SITES:
        _sites.clear()
    _sites[where] = _Site(kernel, kwargs, types, ints, compiled, tail, stage)


def _proven(site: _Site, grid, args) -> bool:
    """A site's first direct launch: whether its launcher took the
    arguments (a TypeError says it did not, and nothing was launched). A C
    function that rejects them gives way to the wrapper for good."""
    try:
        _run(site, grid, args)
        return True
    except TypeError:
        if site.c is None:
            return False
    site.c = None
    try:
        _run(site, grid, args)
        return True
    except TypeError:
        return False


def _run(site: _Site, grid, args) -> None:
    """The remembered variant's own launcher, called as Triton's path calls
    it (no launch hooks), or its C function where :func:`_c_launch` found it."""
    gx, gy, gz = grid[0], grid[1] if len(grid) > 1 else 1, grid[2] if len(grid) > 2 else 1
    if site.c is not None:
        site.c(gx, gy, gz, _local.stream, site.function, *site.c_head, *args, *site.tail)
    else:
        site.run(gx, gy, gz, _local.stream, site.function, site.meta, None, None, None, *args,
                 *site.tail)


@contextlib.contextmanager
def collecting(into: list):
    """While open, this thread's launches are appended to ``into`` as
    ``(kernel, grid, args, kwargs)`` and not launched (``warmup``'s compile
    pass; the calls' outputs are then never written)."""
    outer = _local.collect
    _local.collect = into
    try:
        yield into
    finally:
        _local.collect = outer


def _signature(arg):
    # What Triton chooses a variant by: a tensor's dtype and 16-byte
    # alignment, an int's specialisation class, any other value's type.
    if isinstance(arg, torch.Tensor):
        return arg.dtype, arg.data_ptr() % 16 == 0
    if type(arg) is int:
        return int_class(arg)
    return type(arg)


def compile_all(launches: list, threads: int) -> int:
    """Compile the variant of each distinct recorded launch, ``threads`` at
    a time, without launching (``JITFunction.warmup``); returns how many.

    Triton's compiler releases the GIL: two kernels compiled in two threads
    took 8.8 s against 17.0 one after the other (2-core CPU, sm_90 target,
    eleventh session), and warming every op for one vocabulary and dtype
    took 360 s one at a time on the H100 machine. A variant that fails to
    compile here is left to the call that needs it, which compiles it again
    and reports the failure with its stage.
    """
    distinct = {}
    for kernel, grid, args, kwargs in launches:
        params = getattr(kernel, "params", ())
        # An int Triton does not specialise (do_not_specialize) counts by type.
        sig = tuple(type(a) if i < len(params) and getattr(params[i], "do_not_specialize", False)
                    else _signature(a) for i, a in enumerate(args))
        key = (kernel, sig, tuple(sorted(kwargs.items())))
        distinct.setdefault(key, (kernel, grid, args, kwargs))
    kernels = {kernel for kernel, *_ in distinct.values() if hasattr(kernel, "device_caches")}
    device = None
    if kernels:
        # Triton makes each kernel's per-device cache on first use; make it
        # here, once, so that threads do not each make and keep their own.
        device = triton.runtime.driver.active.get_current_device()
        for kernel in kernels:
            kernel.device_caches[device]

    def compile_one(launch):
        kernel, grid, args, kwargs = launch
        try:
            # The current device is per thread (a new one starts on device
            # 0): compile for, and into the cache of, the caller's device.
            with torch.cuda.device(device) if device is not None else contextlib.nullcontext():
                kernel.warmup(*args, grid=grid, **kwargs)
        except Exception:   # noqa: BLE001 - the call that needs it reports it
            pass

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        list(pool.map(compile_one, distinct.values()))
    return len(distinct)


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
    if _knobs is None:
        return   # an older Triton: stages read 'launch <kernel>' only
    for slot, hook in (("jit_cache_hook", _on_compile), ("jit_post_compile_hook", _on_compiled)):
        if hasattr(_knobs, slot) and getattr(_knobs, slot) is None:
            setattr(_knobs, slot, hook)


_install_hooks()
