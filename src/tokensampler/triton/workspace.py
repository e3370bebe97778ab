"""A call's scratch tensors: views carved from one buffer a thread keeps per stream.

A small batch waits for its call's host time, and on the H100 machine's
CPU each ``torch.empty`` on the GPU cost 4.9 µs (benchmarks/host_paths.py,
twelfth session): top-k made 7 of them a call, top-p 6. So the workspaces
of a layout (``triton._layout``: shapes and which parameters a call has)
are carved once from a buffer that the calling thread keeps for the
device's current stream, and every later call with that layout gets the
same views. Reuse is safe because calls on one stream run in order: a
call's launches start after the previous call's have finished with the
views. Per thread, because two threads that issue on one stream may
interleave their launches.

While a CUDA graph is being captured a call gets fresh tensors, as before:
they belong to the graph's memory pool, and the graph may be replayed on
another stream while eager calls use the buffer.

Each buffer grows, at least doubling, to the largest layout seen (views
carved from the old one are dropped); with the counters' buffer a thread
holds up to twice MAX_BYTES a stream. It is held until :func:`release` or
the thread's end (a watchdog worker ends with its caller thread). A layout
needing more than MAX_BYTES gets fresh tensors each call instead: at that
size (top-k at B=1024, V=128256: 65 MiB) the GPU time, not the host's,
sets the pace. A thread keeps buffers for at most MAX_BUFFERS (device,
stream) pairs, the least recently used dropped first, so code that makes a
new stream per request does not pile them up. Streams are told apart by
their raw handle: a stream destroyed with work still queued, whose handle
a new stream then gets, would share its buffer with that work.

The views a call's ``triton.inspect`` hook sees are the next call's too.

Counters (arrival counters, histogram bins) come from a second buffer that
is zero at rest: it starts zeroed, and every launch leaves the counters it
used at zero (the last program to arrive resets its row's counter; the
reader of a bin resets it), so no call needs a memset (11.9 µs of host
time on the H200 machine, thirteenth session). The views of every layout
share it, since each call leaves it as it found it. ``carve(layout, alloc,
zeros)`` asks for those views with ``zeros``.

>>> import torch
>>> from types import SimpleNamespace
>>> def carve(n, alloc, zeros):
...     return SimpleNamespace(a=alloc(n, torch.int32), b=alloc(3, torch.int64),
...                            counts=zeros(n))
>>> w = get(5, carve, torch.device("cpu"), None)
>>> w is get(5, carve, torch.device("cpu"), None), w.b.dtype, w.b.data_ptr() % 16
(True, torch.int64, 0)
>>> w.counts.tolist()
[0, 0, 0, 0, 0]
>>> release()
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from types import SimpleNamespace
from typing import Callable

import torch

MAX_BYTES = 64 << 20   # larger layouts are not kept (B=256, V=128256 top-k: 16 MiB)
# Layouts (each batch size its own) whose views a buffer keeps, least
# recently used dropped first. A server cycling through more batch sizes
# than this would carve again at every call (about 30 µs): views are cheap.
MAX_LAYOUTS = 1024
MAX_BUFFERS = 8        # (device, stream) buffers a thread keeps
_ALIGN = 4             # int32 entries: every view starts 16-byte aligned (launcher.py)

_local = threading.local()


class _Buffer:
    __slots__ = ("data", "zeros", "views")

    def __init__(self):
        self.data = None            # int32 tensor
        self.zeros = None           # int32 tensor, zero at rest (the counters)
        # layout -> [what its carve function returned, the same with each
        # tensor's address in its place (made at the first call that asks)]
        self.views = OrderedDict()


def addresses_of(views):
    """``views`` (a namespace of tensors) with each tensor's ``data_ptr()``
    in its place: the form a ready launch takes (launcher.ready). It also
    holds the tensors (``tensors``): fresh ones (during graph capture,
    above MAX_BYTES) must outlive the launches that use their addresses,
    or the allocator could hand their memory to an allocation made between
    this and those launches."""
    return SimpleNamespace(tensors=views, **{k: v.data_ptr() for k, v in vars(views).items()})


def _entries(numel: int, dtype: torch.dtype) -> int:
    """int32 entries that ``numel`` elements of ``dtype`` take, rounded up to
    the alignment."""
    n = -(-numel * dtype.itemsize // 4)
    return -(-n // _ALIGN) * _ALIGN


@functools.lru_cache(maxsize=4096)
def size_of(layout, carve: Callable) -> tuple[int, int]:
    """int32 entries that the tensors ``carve(layout, alloc, zeros)`` asks
    for take: through ``alloc``, and through ``zeros``."""
    total = [0, 0]

    def count(which, numel, dtype=torch.int32):
        total[which] += _entries(numel, dtype)
        return torch.empty(numel, dtype=dtype, device="meta")   # carve may slice it
    carve(layout, lambda *a: count(0, *a), lambda *a: count(1, *a))
    return total[0], total[1]


def _carver(data: torch.Tensor):
    at = 0

    def view(numel, dtype=torch.int32):
        nonlocal at
        n = _entries(numel, dtype)
        out = data[at:at + n].view(dtype)[:numel]
        at += n
        return out
    return view


def _fresh(device: torch.device, layout, carve: Callable):
    return carve(layout, lambda numel, dtype: torch.empty(numel, dtype=dtype, device=device),
                 lambda numel, dtype=torch.int32: torch.zeros(numel, dtype=dtype, device=device))


def get(layout, carve: Callable, device: torch.device, stream, addresses: bool = False):
    """What ``carve(layout, alloc, zeros)`` returns, where ``alloc(numel,
    dtype)`` and ``zeros(numel, dtype=int32)`` give 1-D tensors, 16-byte
    aligned; the same object at every call with this ``layout`` (hashable),
    ``device`` and ``stream`` (the raw handle, or None off CUDA) from this
    thread, except while a CUDA graph is captured or when the layout needs
    more than MAX_BYTES. ``alloc``'s tensors hold whatever the last call
    left; ``zeros``'s are zero, and the call must leave them so (or call
    :func:`discard`). With ``addresses``, the same with each tensor's
    address in its place (:func:`addresses_of`), kept with the views."""
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        fresh = _fresh(device, layout, carve)
        return addresses_of(fresh) if addresses else fresh
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = OrderedDict()
    where = (device, stream)
    buf = buffers.get(where)
    if buf is None:
        buf = buffers[where] = _Buffer()
        if len(buffers) > MAX_BUFFERS:
            buffers.popitem(last=False)
    elif len(buffers) > 1:
        buffers.move_to_end(where)
    kept = buf.views.get(layout)
    if kept is not None:
        buf.views.move_to_end(layout)
        if not addresses:
            return kept[0]
        if kept[1] is None:
            kept[1] = addresses_of(kept[0])
        return kept[1]
    need, counters = size_of(layout, carve)
    if (need + counters) * 4 > MAX_BYTES:
        fresh = _fresh(device, layout, carve)
        return addresses_of(fresh) if addresses else fresh
    # Growing drops every view carved from the old buffer; the old buffer
    # goes first (its queued work keeps it, stream-ordered).
    if buf.data is None or buf.data.numel() < need:
        size = _grown(buf.data, need)
        buf.data = None
        buf.views.clear()
        buf.data = torch.empty(size, dtype=torch.int32, device=device)
    if counters and (buf.zeros is None or buf.zeros.numel() < counters):
        size = _grown(buf.zeros, counters)
        buf.zeros = None
        buf.views.clear()
        buf.zeros = torch.zeros(size, dtype=torch.int32, device=device)
    views = carve(layout, _carver(buf.data), _carver(buf.zeros))
    buf.views[layout] = [views, addresses_of(views) if addresses else None]
    if len(buf.views) > MAX_LAYOUTS:
        buf.views.popitem(last=False)
    return buf.views[layout][1] if addresses else views


def _grown(old, need: int) -> int:
    """Entries of a buffer replacing ``old`` (or None) that must hold ``need``:
    at least double, within MAX_BYTES, so that growing batch sizes allocate
    and carve again a few times, not at every new size."""
    return max(need, min(2 * old.numel() if old is not None else 0, MAX_BYTES // 4))


def discard(device: torch.device, stream) -> None:
    """Forget this thread's buffers for ``device`` and ``stream``: a call
    that stopped between its launches may have left counters that are not
    zero (the next call allocates afresh)."""
    buffers = getattr(_local, "buffers", None)
    if buffers is not None:
        buffers.pop((device, stream), None)


def release() -> None:
    """Free this thread's buffers (the next call allocates again)."""
    _local.buffers = None
