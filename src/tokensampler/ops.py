"""The catalog of public ops (:data:`OPS`) and ``tokensampler.warmup``,
which compiles and loads their kernels before serving.

Triton compiles a kernel the first time it meets a new specialisation (input
dtype, whether the vocabulary size is a multiple of 16, scalar or per-request
parameters, one seed or one per request), which takes seconds; a cached
compilation still takes milliseconds to load. :func:`warmup` makes those
first calls on a tiny batch, so that the first request a server takes runs
at full speed. It goes through the public functions, so a device where the
kernels cannot run falls back (and warns) here rather than at the first
request. :data:`OPS` is also the list ``tokensampler doctor`` runs.
"""

from __future__ import annotations

import math
import os
import time
from typing import Callable, Iterable, Optional

import torch

from . import dispatch, sampling
from .errors import ArgumentError, ArgumentTypeError

# name -> (function, takes logits, parameters)
OPS: dict[str, tuple[Callable, bool, dict]] = {
    "sampling_from_probs": (sampling.sampling_from_probs, False, {}),
    "sampling_from_logits": (sampling.sampling_from_logits, True, {"temperature": 0.7}),
    "top_p_sampling_from_probs": (sampling.top_p_sampling_from_probs, False, {"top_p": 0.9}),
    "top_k_sampling_from_probs": (sampling.top_k_sampling_from_probs, False, {"top_k": 50}),
    "min_p_sampling_from_probs": (sampling.min_p_sampling_from_probs, False, {"min_p": 0.1}),
    "top_k_top_p_sampling_from_probs": (sampling.top_k_top_p_sampling_from_probs, False,
                                        {"top_k": 50, "top_p": 0.9}),
    "top_k_top_p_sampling_from_probs(joint)": (
        sampling.top_k_top_p_sampling_from_probs, False,
        {"top_k": 50, "top_p": 0.9, "filter_apply_order": "joint"}),
    "top_k_top_p_sampling_from_logits": (sampling.top_k_top_p_sampling_from_logits, True,
                                         {"top_k": 50, "top_p": 0.9, "temperature": 0.7}),
    "top_p_renorm_probs": (sampling.top_p_renorm_probs, False, {"top_p": 0.9}),
    "top_k_renorm_probs": (sampling.top_k_renorm_probs, False, {"top_k": 50}),
    "top_k_mask_logits": (sampling.top_k_mask_logits, True, {"top_k": 50}),
    "softmax": (sampling.softmax, True, {"temperature": 0.7}),
}
SAMPLERS = tuple(name for name in OPS if "sampling" in name)


def example_inputs(vocab: int, batch: int, dtype, device, seed: int = 0):
    """(logits, probs) of shape ``(batch, vocab)``: N(0, 2) logits and their softmax."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    logits = torch.randn(batch, vocab, generator=g) * 2
    return logits.to(device, dtype), torch.softmax(logits, dim=1).to(device, dtype)


def call_op(name: str, logits, probs, per_row: bool, **extra):
    """Run op ``name`` once, with scalar or per-row parameters and seeds."""
    fn, from_logits, params = OPS[name]
    x = logits if from_logits else probs
    n = x.shape[0]
    kw = dict(params)
    if per_row:
        for key, value in params.items():
            if key != "filter_apply_order":
                dtype = torch.int64 if isinstance(value, int) else torch.float32
                kw[key] = torch.full((n,), value, dtype=dtype, device=x.device)
    if name in SAMPLERS:
        kw["seed"] = torch.arange(n, device=x.device) if per_row else 1234
        kw["return_valid"] = True
    # A serving timeout (set_default_timeout, TOKENSAMPLER_TIMEOUT_S) is sized
    # for warm kernels; these first calls compile, which takes seconds.
    kw.setdefault("timeout_s", math.inf)
    return fn(x, **kw, **extra)


def warmup(vocab_sizes: Iterable[int] = (32000,), dtypes: Iterable[torch.dtype] = (torch.float32,),
           device=None, *, per_row: Iterable[bool] = (False, True), ops: Optional[Iterable[str]] = None,
           backend: Optional[str] = None, batches: Optional[Iterable[int]] = None,
           threads: Optional[int] = None) -> list[dict]:
    """Make the first call of every op for each vocabulary size and dtype.

    The Triton backend runs a sampler's per-row steps at the end of the
    launch before them for small batches and as launches of their own above
    64 outputs, and top-p checks round 0's draw 0 alone first above 384:
    each a compiled form of its own, so by default each op is called at a
    batch in each (2, 65 and 385; the reference backend has one form, 2).

    Parameters
    ----------
    vocab_sizes : iterable of int
        The vocabulary sizes you will serve, each of them: top-k and joint
        sampling compile a variant per power of two of 4096-token chunks
        (32000 and 128256 differ; 151936 and 262144 share one). Warmed
        with top_k = 50: a scalar top_k from 880 at V=32000 (1614 at
        128256) reads smaller groups, another variant, compiled at its
        first call (a per-request top_k tensor never does).
    dtypes : iterable of torch.dtype
        Input dtypes: float32, float16, bfloat16.
    device : torch.device or str, optional
        Default: the current CUDA device if there is one, else the CPU.
    per_row : iterable of bool
        Warm scalar parameters and one seed (False), per-request tensors of
        parameters and seeds (True), or both (the default).
    ops : iterable of str, optional
        Names from :data:`OPS`; default all.
    backend : str, optional
        As for every function; default the automatic choice.
    batches : iterable of int, optional
        Batch sizes to call each op with; default one in each launch form of
        the backend that runs on ``device``.
    threads : int, optional
        Kernels compiled at a time before the calls are made (Triton on a
        GPU; the compiler releases the GIL). Default: the CPU count, at
        most 16; 1 compiles each at its first call.

    Returns
    -------
    list of dict
        One record per call: op, vocab, dtype, per_row, batch, seconds
        (synchronised).

    Examples
    --------
    >>> import torch, tokensampler
    >>> report = tokensampler.warmup([1000], [torch.float32], "cpu", ops=["softmax"])
    >>> [(r["op"], r["vocab"], r["per_row"]) for r in report]
    [('softmax', 1000, False), ('softmax', 1000, True)]
    """
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ArgumentError(f"warmup: argument 'device' must name a torch device such as "
                            f"'cuda' or 'cuda:1', got {device!r}") from exc
    lists = {"vocab_sizes": vocab_sizes, "dtypes": dtypes, "per_row": per_row, "batches": batches}
    for arg, value in lists.items():
        if value is None:   # (batches: the backend's own below)
            continue
        if isinstance(value, (int, bool, torch.dtype, str)) or not hasattr(value, "__iter__"):
            raise ArgumentTypeError(f"warmup: argument '{arg}' must be a list, got "
                                    f"{type(value).__name__} {value!r} (write [{value!r}])")
        lists[arg] = list(value)
    vocab_sizes, dtypes, per_row, batches = lists.values()
    chosen, _ = dispatch.choose("warmup", backend, device)   # names a bad backend as warmup's
    try:
        module = dispatch.load(chosen)
    except Exception:   # noqa: BLE001 - the calls below fall back (or raise) and say why
        module = None
    if batches is None:
        batches = list(module.warm_batches()) if module is not None else [2]
    for arg, values in (("vocab_sizes", vocab_sizes), ("batches", batches)):
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1]
        if bad:
            raise ArgumentError(f"warmup: argument '{arg}' must hold positive ints, got {bad}")
    bad = [d for d in dtypes if d not in (torch.float32, torch.float16, torch.bfloat16)]
    if bad:
        raise ArgumentError(f"warmup: argument 'dtypes' must hold torch.float32, torch.float16 "
                            f"or torch.bfloat16, got {bad}")
    if isinstance(ops, str):
        raise ArgumentTypeError(f"warmup: argument 'ops' must be a list of names, got the "
                                f"string {ops!r} (write ops=[{ops!r}])")
    names = list(OPS) if ops is None else list(ops)
    unknown = [n for n in names if n not in OPS]
    if unknown:
        raise ArgumentError(f"warmup: argument 'ops' names unknown ops {unknown}; expected "
                            f"names from {list(OPS)}")
    if threads is None:
        threads = min(16, os.cpu_count() or 1)
    elif isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ArgumentError(f"warmup: argument 'threads' must be a positive int, got {threads!r}")
    # On a GPU each input set's calls are first made with launches recorded,
    # not made, and the distinct variants compiled in threads; one set at a
    # time, as the recorded launches hold its tensors.
    compile_first = module is not None and threads > 1 and device.type != "cpu"
    report = []
    for dtype in dtypes:
        for vocab in vocab_sizes:
            for batch in batches:
                logits, probs = example_inputs(vocab, batch, dtype, device)
                if compile_first:
                    module.precompile(lambda: _recorded_calls(names, per_row, logits, probs,
                                                              chosen), threads)
                for name in names:
                    for row in per_row:
                        start = time.perf_counter()
                        call_op(name, logits, probs, row, backend=backend)
                        if device.type == "cuda":
                            torch.cuda.synchronize(device)
                        report.append(dict(op=name, vocab=vocab,
                                           dtype=str(dtype).replace("torch.", ""), per_row=row,
                                           batch=batch, seconds=time.perf_counter() - start))
    return report


def _recorded_calls(names, per_row, logits, probs, backend: str) -> None:
    """Every call warmup times, made while ``precompile`` records launches."""
    for name in names:
        for row in per_row:
            try:   # a named backend: a failure raises, and never falls back
                call_op(name, logits, probs, row, backend=backend)
            except Exception:   # noqa: BLE001 - the timed call reports it, with its stage
                pass
