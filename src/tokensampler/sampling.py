"""The public API. Names and positional parameters mirror ``flashinfer.sampling``.

Each function checks its arguments once (:mod:`tokensampler.params`), picks a
backend (:mod:`tokensampler.dispatch`) and hands over. The semantics every
backend implements are in docs/semantics.md.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch

from . import dispatch, watchdog
from .params import filter_call, sampling_call

Tensor = torch.Tensor
Samples = Union[Tensor, Tuple[Tensor, Tensor]]

_SHARED = {
    "{probs}": """probs : torch.Tensor
        ``(batch, vocab)`` non-negative weights, float32, float16 or bfloat16.
        Rows need not sum to 1: each is divided by its own total.""",
    "{logits}": """logits : torch.Tensor
        ``(batch, vocab)`` logits, float32, float16 or bfloat16. ``-inf``
        masks a token out.""",
    "{top_p}": """top_p : float or torch.Tensor
        Nucleus threshold in [0, 1], or one per output as a ``(N,)`` tensor.
        Keeps the shortest prefix of the order whose mass reaches ``top_p``
        times the row total (the crossing token is kept). ``>= 1`` disables,
        ``0`` keeps only the first token.""",
    "{top_k}": """top_k : int or torch.Tensor
        Keep the first k tokens of the order, or one k per output as an
        integer ``(N,)`` tensor. ``k <= 0`` or ``k >= vocab`` disables.""",
    "{sampler}": """indices : torch.Tensor, optional
        ``(N,)`` int32/int64: output ``j`` samples row ``indices[j]``. Every
        output draws its own random numbers (its position enters the stream
        under one shared seed), so outputs sharing a row are independent
        draws, unless you give them equal per-output seeds and offsets.
        Default: output ``j`` samples row ``j``.
    deterministic : bool
        Accepted for FlashInfer compatibility; every backend is deterministic.
    generator : torch.Generator, optional
        Where the seed comes from when ``seed`` is None (default: torch's
        default generator of the input's device, which each call advances).
    check_nan : bool
        Raise ``ValueError`` if the input holds NaN (synchronises the host).
        Without it a NaN row is reported through ``valid`` instead.
    seed : int or torch.Tensor, optional
        64-bit seed: an int, or an int64 tensor of shape ``(1,)`` (one seed
        for the batch; rows still differ) or ``(N,)`` (one per output; an
        output's token then depends only on its own row, parameters, seed and
        offset, at any batch position). An int costs a fill launch and no
        host synchronisation; a CUDA graph captures it as a constant, so to
        vary seeds between replays pass a tensor and change it in place.
    offset : int or torch.Tensor, optional
        64-bit Philox offset, same shapes as ``seed``; default 0. Advance it
        (or the seed) between steps when you pass seeds yourself.
    return_valid : bool
        Also return ``valid``: False for rows with NaN, +inf or negative
        weights, zero total, all ``-inf`` logits, or an out-of-range
        per-output parameter or index on an accelerator. Such outputs are 0.
    {common}

    Returns
    -------
    samples : torch.Tensor
        ``(N,)`` int32 token ids in ``[0, vocab)``; ``(samples, valid)`` when
        ``return_valid`` is True.""",
    "{common}": """backend : {"reference", "triton"}, optional
        Force a backend; default: the ``TOKENSAMPLER_BACKEND`` environment
        variable, else chosen by the input's device (falling back to the
        reference, with a warning, where the kernels cannot run).
    timeout_s : float, optional
        Wait at most this many seconds for the result, then raise
        ``SamplingTimeoutError`` naming the stage that did not finish. With
        a limit the call returns only once its result is ready. Default:
        ``tokensampler.set_default_timeout``, else the
        ``TOKENSAMPLER_TIMEOUT_S`` environment variable, else no limit
        (the call returns at once, asynchronously). ``math.inf``: no limit.""",
    "{temperature}": """temperature : float or torch.Tensor, optional
        Divides the logits before the softmax; ``0`` means greedy (argmax,
        lowest index on ties). A number, or one per output ``(N,)``. Default 1.""",
}


def _doc(fn):
    for key, text in _SHARED.items():
        fn.__doc__ = fn.__doc__.replace(key, text)
    return fn


def _run(method: str, op: str, x: Tensor, backend: Optional[str], timeout_s, **kw):
    """Check the arguments, then run ``method`` of the chosen backend, all
    under the watchdog (argument checks included: they may draw a seed)."""
    make_call = sampling_call if method == "sample" else filter_call

    def work():
        call = make_call(op, x, **kw)
        return dispatch.run(op, backend, call.x.device, method, call)

    return watchdog.guarded(op, x, timeout_s, work)


def _sample(op: str, x: Tensor, backend: Optional[str], return_valid: bool, *, timeout_s,
            **kw) -> Samples:
    # (A backend may skip making the flags where they are not wanted.)
    samples, valid = _run("sample", op, x, backend, timeout_s, want_valid=bool(return_valid), **kw)
    return (samples, valid) if return_valid else samples


@_doc
def sampling_from_probs(probs: Tensor, indices: Optional[Tensor] = None, deterministic: bool = True,
                        generator: Optional[torch.Generator] = None, check_nan: bool = False,
                        seed=None, offset=None, return_valid: bool = False, *,
                        backend: Optional[str] = None, timeout_s=None) -> Samples:
    """Sample one token per output from unfiltered weights.

    Parameters
    ----------
    {probs}
    {sampler}

    Examples
    --------
    >>> import torch, tokensampler
    >>> probs = torch.tensor([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    >>> tokensampler.sampling_from_probs(probs, seed=7)
    tensor([1, 0], dtype=torch.int32)
    """
    return _sample("sampling_from_probs", probs, backend, return_valid, from_logits=False,
                   indices=indices, generator=generator, check_nan_=check_nan, seed=seed,
                   offset=offset, timeout_s=timeout_s)


@_doc
def sampling_from_logits(logits: Tensor, indices: Optional[Tensor] = None,
                         deterministic: bool = True, generator: Optional[torch.Generator] = None,
                         check_nan: bool = False, seed=None, offset=None,
                         return_valid: bool = False, *, temperature=None,
                         backend: Optional[str] = None, timeout_s=None) -> Samples:
    """Sample from ``softmax(logits / temperature)`` without filtering.

    Parameters
    ----------
    {logits}
    {sampler}
    {temperature}

    Examples
    --------
    >>> import torch, tokensampler
    >>> logits = torch.tensor([[0.0, 2.0, -float("inf")]])
    >>> tokensampler.sampling_from_logits(logits, seed=3, temperature=0.0)
    tensor([1], dtype=torch.int32)
    """
    return _sample("sampling_from_logits", logits, backend, return_valid, from_logits=True,
                   indices=indices, generator=generator, check_nan_=check_nan, seed=seed,
                   offset=offset, temperature=temperature, timeout_s=timeout_s)


@_doc
def top_p_sampling_from_probs(probs: Tensor, top_p, indices: Optional[Tensor] = None,
                              deterministic: bool = True,
                              generator: Optional[torch.Generator] = None,
                              check_nan: bool = False, seed=None, offset=None,
                              return_valid: bool = False, *,
                              backend: Optional[str] = None, timeout_s=None) -> Samples:
    """Nucleus (top-p) sampling from weights.

    Parameters
    ----------
    {probs}
    {top_p}
    {sampler}

    Examples
    --------
    >>> import torch, tokensampler
    >>> probs = torch.tensor([[0.5, 0.25, 0.125, 0.125]])
    >>> tokensampler.top_p_sampling_from_probs(probs, 0.5, seed=0)  # keeps token 0 only
    tensor([0], dtype=torch.int32)
    """
    return _sample("top_p_sampling_from_probs", probs, backend, return_valid, from_logits=False,
                   top_p=top_p, indices=indices, generator=generator, check_nan_=check_nan,
                   seed=seed, offset=offset, timeout_s=timeout_s)


@_doc
def top_k_sampling_from_probs(probs: Tensor, top_k, indices: Optional[Tensor] = None,
                              deterministic: bool = True,
                              generator: Optional[torch.Generator] = None,
                              check_nan: bool = False, seed=None, offset=None,
                              return_valid: bool = False, *,
                              backend: Optional[str] = None, timeout_s=None) -> Samples:
    """Top-k sampling from weights.

    Parameters
    ----------
    {probs}
    {top_k}
    {sampler}

    Examples
    --------
    >>> import torch, tokensampler
    >>> probs = torch.tensor([[0.125, 0.5, 0.25, 0.125]])
    >>> tokensampler.top_k_sampling_from_probs(probs, 1, seed=5)  # argmax
    tensor([1], dtype=torch.int32)
    """
    return _sample("top_k_sampling_from_probs", probs, backend, return_valid, from_logits=False,
                   top_k=top_k, indices=indices, generator=generator, check_nan_=check_nan,
                   seed=seed, offset=offset, timeout_s=timeout_s)


@_doc
def min_p_sampling_from_probs(probs: Tensor, min_p, indices: Optional[Tensor] = None,
                              deterministic: bool = True,
                              generator: Optional[torch.Generator] = None,
                              check_nan: bool = False, seed=None, offset=None,
                              return_valid: bool = False, *,
                              backend: Optional[str] = None, timeout_s=None) -> Samples:
    """Min-p sampling: keep tokens with weight >= ``min_p`` x the row's largest.

    Parameters
    ----------
    {probs}
    min_p : float or torch.Tensor
        At most 1, or one per output ``(N,)``; ``<= 0`` disables.
    {sampler}

    Examples
    --------
    >>> import torch, tokensampler
    >>> probs = torch.tensor([[0.5, 0.25, 0.25]])
    >>> tokensampler.min_p_sampling_from_probs(probs, 1.0, seed=1)
    tensor([0], dtype=torch.int32)
    """
    return _sample("min_p_sampling_from_probs", probs, backend, return_valid, from_logits=False,
                   min_p=min_p, indices=indices, generator=generator, check_nan_=check_nan,
                   seed=seed, offset=offset, timeout_s=timeout_s)


@_doc
def top_k_top_p_sampling_from_probs(probs: Tensor, top_k, top_p, indices: Optional[Tensor] = None,
                                    filter_apply_order: str = "top_k_first",
                                    deterministic: bool = True,
                                    generator: Optional[torch.Generator] = None,
                                    check_nan: bool = False, seed=None, offset=None,
                                    return_valid: bool = False, *,
                                    backend: Optional[str] = None, timeout_s=None) -> Samples:
    """Top-k and top-p sampling from weights.

    Parameters
    ----------
    {probs}
    {top_k}
    {top_p}
    filter_apply_order : {"top_k_first", "joint"}
        ``top_k_first``: top-k, then top-p measured on the mass top-k kept.
        ``joint``: top-p measured on the whole row, intersected with top-k.
    {sampler}

    Examples
    --------
    >>> import torch, tokensampler
    >>> probs = torch.tensor([[0.5, 0.25, 0.125, 0.125]])
    >>> tokensampler.top_k_top_p_sampling_from_probs(probs, 2, 0.625, seed=0, return_valid=True)
    (tensor([0], dtype=torch.int32), tensor([True]))
    """
    return _sample("top_k_top_p_sampling_from_probs", probs, backend, return_valid,
                   from_logits=False, top_k=top_k, top_p=top_p, indices=indices,
                   filter_apply_order=filter_apply_order, generator=generator,
                   check_nan_=check_nan, seed=seed, offset=offset, timeout_s=timeout_s)


@_doc
def top_k_top_p_sampling_from_logits(logits: Tensor, top_k, top_p,
                                     indices: Optional[Tensor] = None,
                                     filter_apply_order: str = "top_k_first",
                                     deterministic: bool = True,
                                     generator: Optional[torch.Generator] = None,
                                     check_nan: bool = False, seed=None, offset=None,
                                     return_valid: bool = False, *, temperature=None,
                                     backend: Optional[str] = None, timeout_s=None) -> Samples:
    """Top-k and top-p sampling from ``softmax(logits / temperature)``.

    Parameters
    ----------
    {logits}
    {top_k}
    {top_p}
    filter_apply_order : {"top_k_first", "joint"}
        As in :func:`top_k_top_p_sampling_from_probs`.
    {sampler}
    {temperature}

    Examples
    --------
    >>> import torch, tokensampler
    >>> logits = torch.tensor([[1.0, 3.0, 2.0, -float("inf")]])
    >>> tokensampler.top_k_top_p_sampling_from_logits(logits, 1, 0.9, seed=11)
    tensor([1], dtype=torch.int32)
    """
    return _sample("top_k_top_p_sampling_from_logits", logits, backend, return_valid,
                   from_logits=True, top_k=top_k, top_p=top_p, indices=indices,
                   filter_apply_order=filter_apply_order, generator=generator,
                   check_nan_=check_nan, seed=seed, offset=offset, temperature=temperature,
                   timeout_s=timeout_s)


@_doc
def top_p_renorm_probs(probs: Tensor, top_p, *, backend: Optional[str] = None,
                       timeout_s=None) -> Tensor:
    """Zero the tokens top-p drops and renormalise the rest to sum 1.

    Parameters
    ----------
    probs : torch.Tensor
        ``(batch, vocab)`` non-negative weights, float32, float16 or bfloat16.
    top_p : float or torch.Tensor
        In [0, 1], or one per row ``(batch,)``; see :func:`top_p_sampling_from_probs`.
    {common}

    Returns
    -------
    torch.Tensor
        float32 ``(batch, vocab)``; an invalid row (see docs/semantics.md) is all NaN.

    Examples
    --------
    >>> import torch, tokensampler
    >>> tokensampler.top_p_renorm_probs(torch.tensor([[0.5, 0.25, 0.25]]), 0.75)
    tensor([[0.6667, 0.3333, 0.0000]])
    """
    return _run("renorm", "top_p_renorm_probs", probs, backend, timeout_s, from_logits=False,
               top_p=top_p)


@_doc
def top_k_renorm_probs(probs: Tensor, top_k, *, backend: Optional[str] = None,
                       timeout_s=None) -> Tensor:
    """Zero all but the top-k tokens and renormalise them to sum 1.

    Parameters
    ----------
    probs : torch.Tensor
        ``(batch, vocab)`` non-negative weights, float32, float16 or bfloat16.
    top_k : int or torch.Tensor
        One k, or one per row ``(batch,)``; ``k <= 0`` or ``k >= vocab`` keeps all.
    {common}

    Returns
    -------
    torch.Tensor
        float32 ``(batch, vocab)``; an invalid row is all NaN.

    Examples
    --------
    >>> import torch, tokensampler
    >>> tokensampler.top_k_renorm_probs(torch.tensor([[0.25, 0.5, 0.25]]), 2)
    tensor([[0.3333, 0.6667, 0.0000]])
    """
    return _run("renorm", "top_k_renorm_probs", probs, backend, timeout_s, from_logits=False,
               top_k=top_k)


@_doc
def top_k_mask_logits(logits: Tensor, top_k, *, backend: Optional[str] = None,
                      timeout_s=None) -> Tensor:
    """Set every logit outside the top k to ``-inf``.

    Parameters
    ----------
    logits : torch.Tensor
        ``(batch, vocab)``, float32, float16 or bfloat16.
    top_k : int or torch.Tensor
        One k, or one per row ``(batch,)``; ``k <= 0`` or ``k >= vocab`` keeps all.
    {common}

    Returns
    -------
    torch.Tensor
        Same shape and dtype as ``logits``; an invalid row is all NaN.

    Examples
    --------
    >>> import torch, tokensampler
    >>> tokensampler.top_k_mask_logits(torch.tensor([[1.0, 3.0, 3.0, 2.0]]), 2)
    tensor([[-inf, 3., 3., -inf]])
    """
    return _run("mask_logits", "top_k_mask_logits", logits, backend, timeout_s,
               from_logits=True, top_k=top_k)


@_doc
def softmax(logits: Tensor, temperature=None, enable_pdl: Optional[bool] = None, *,
            backend: Optional[str] = None, timeout_s=None) -> Tensor:
    """``softmax(logits / temperature)`` per row, in float32.

    Parameters
    ----------
    logits : torch.Tensor
        ``(batch, vocab)``, float32, float16 or bfloat16.
    temperature : float or torch.Tensor, optional
        Default 1; one per row ``(batch,)`` allowed. ``0`` gives the limit:
        uniform over the row's largest logits.
    enable_pdl : bool, optional
        Accepted for FlashInfer compatibility and ignored.
    {common}

    Returns
    -------
    torch.Tensor
        float32 ``(batch, vocab)``; an invalid row is all NaN.

    Examples
    --------
    >>> import torch, tokensampler
    >>> tokensampler.softmax(torch.tensor([[0.0, 0.0, -float("inf")]]))
    tensor([[0.5000, 0.5000, 0.0000]])
    """
    return _run("softmax", "softmax", logits, backend, timeout_s, from_logits=True,
               temperature=temperature)
