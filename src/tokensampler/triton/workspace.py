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

The buffer grows, at least doubling, to the largest layout seen (views
carved from the old one are dropped). It is held until :func:`release` or
the thread's end (a watchdog worker ends with its caller thread). A layout
needing more than MAX_BYTES gets fresh tensors each call instead: at that
size (top-k at B=1024, V=128256: 65 MiB) the GPU time, not the host's,
sets the pace. A thread keeps buffers for at most MAX_BUFFERS (device,
stream) pairs, the least recently used dropped first, so code that makes a
new stream per request does not pile them up. Streams are told apart by
their raw handle: a stream destroyed with work still queued, whose handle
a new stream then gets, would share its buffer with that work.

The views a call's ``triton.inspect`` hook sees are the next call's too.

>>> import torch
>>> from types import SimpleNamespace
>>> def carve(n, alloc):
...     return SimpleNamespace(a=alloc(n, torch.int32), b=alloc(3, torch.int64))
>>> w = get(5, carve, torch.device("cpu"), None)
>>> w is get(5, carve, torch.device("cpu"), None), w.b.dtype, w.b.data_ptr() % 16
(True, torch.int64, 0)
>>> release()
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
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
    __slots__ = ("data", "views")

    def __init__(self):
        self.data = None            # int32 tensor
        self.views = OrderedDict()  # layout -> what its carve function returned


def _entries(numel: int, dtype: torch.dtype) -> int:
    """int32 entries that ``numel`` elements of ``dtype`` take, rounded up to
    the alignment."""
    n = -(-numel * dtype.itemsize // 4)
    return -(-n // _ALIGN) * _ALIGN


@functools.lru_cache(maxsize=4096)
def size_of(layout, carve: Callable) -> int:
    """int32 entries the tensors that ``carve(layout, alloc)`` asks for take."""
    total = 0

    def count(numel, dtype):
        nonlocal total
        total += _entries(numel, dtype)
        return torch.empty(numel, dtype=dtype, device="meta")   # carve may slice it
    carve(layout, count)
    return total


def _carved(data: torch.Tensor, layout, carve: Callable):
    at = 0

    def view(numel, dtype):
        nonlocal at
        n = _entries(numel, dtype)
        out = data[at:at + n].view(dtype)[:numel]
        at += n
        return out
    return carve(layout, view)


def _fresh(device: torch.device, layout, carve: Callable):
    return carve(layout, lambda numel, dtype: torch.empty(numel, dtype=dtype, device=device))


def get(layout, carve: Callable, device: torch.device, stream):
    """What ``carve(layout, alloc)`` returns, where ``alloc(numel, dtype)`` gives a
    1-D tensor, 16-byte aligned; the same object at every call with this
    ``layout`` (hashable), ``device`` and ``stream`` (the raw handle, or
    None off CUDA) from this thread, except while a CUDA graph is captured
    or when the layout needs more than MAX_BYTES. Its contents are whatever
    the last call left: a carve that needs zeros zeroes them each call."""
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        return _fresh(device, layout, carve)
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
    views = buf.views.get(layout)
    if views is not None:
        buf.views.move_to_end(layout)
        return views
    need = size_of(layout, carve)
    if need * 4 > MAX_BYTES:
        return _fresh(device, layout, carve)
    if buf.data is None or buf.data.numel() < need:
        # At least double, within MAX_BYTES, so that growing batch sizes
        # allocate and carve again a few times, not at every new size. The
        # old buffer goes first (its queued work keeps it, stream-ordered).
        size = max(need, min(2 * buf.data.numel() if buf.data is not None else 0,
                             MAX_BYTES // 4))
        buf.data = None
        buf.views.clear()
        buf.data = torch.empty(size, dtype=torch.int32, device=device)
    views = buf.views[layout] = _carved(buf.data, layout, carve)
    if len(buf.views) > MAX_LAYOUTS:
        buf.views.popitem(last=False)
    return views


def release() -> None:
    """Free this thread's buffers (the next call allocates again)."""
    _local.buffers = None
