"""The watchdog: a bound on how long a caller waits for a result (issue 4).

Without a timeout (the default) a call is what it always was: kernels are
queued on the caller's stream and the function returns at once, with no
thread, no event and no synchronisation added.

With a timeout (``timeout_s=`` on a call, :func:`set_default_timeout`, or the
``TOKENSAMPLER_TIMEOUT_S`` environment variable, in that order), the call
waits until its result is ready, in two steps, both bounded by one deadline:

1. **host work** (argument checks, backend choice, kernel compilation on
   first use, launches) runs on a daemon worker thread while the caller waits
   on a :class:`threading.Event`: a compiler that never returns, or a launch
   that blocks behind a hung kernel, is caught here;
2. **synchronize**: on an accelerator the worker then waits on a CUDA event
   recorded after the last launch, created with blocking sync so that the
   thread sleeps in the driver until the GPU signals (a default
   ``synchronize`` may spin a core at 100%).

The worker records the stage it is in (:func:`stage`); on expiry
:class:`~tokensampler.errors.SamplingTimeoutError` names the function, the
input, the backend, the device, the stage that did not finish and the last
one that did. A worker stuck in a stage is abandoned (it is a daemon thread,
so it never blocks interpreter exit) and later calls get a fresh one. What
the GPU is left in, and what the caller can still do, is in
docs/reliability.md.

Example
-------
>>> import torch, tokensampler
>>> tokensampler.sampling_from_probs(torch.tensor([[0.0, 1.0]]), seed=0, timeout_s=5.0)
tensor([1], dtype=torch.int32)
"""

from __future__ import annotations

import math
import os
import queue
import threading
import weakref
from typing import Callable, Optional, TypeVar

import torch

from .errors import ArgumentError, ArgumentTypeError, SamplingTimeoutError

ENV_VAR = "TOKENSAMPLER_TIMEOUT_S"
T = TypeVar("T")

_default: Optional[float] = None
_local = threading.local()   # .job: the Job this thread is working on, if any


def _check(value, source: str) -> Optional[float]:
    """A timeout in seconds, or None for 'no limit'; raises on anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{source} must be a positive number of seconds, math.inf "
                                f"or None, got {type(value).__name__} {value!r}")
    if math.isnan(value) or value <= 0:
        raise ArgumentError(f"{source} must be a positive number of seconds, math.inf or "
                            f"None, got {value!r}")
    return None if math.isinf(value) else float(value)


def set_default_timeout(seconds: Optional[float]) -> None:
    """Set the process-wide timeout for calls that pass no ``timeout_s``.

    Parameters
    ----------
    seconds : float or None
        A positive number of seconds; ``math.inf`` for no limit even where
        the ``TOKENSAMPLER_TIMEOUT_S`` environment variable sets one; ``None``
        to clear the setting (the environment variable applies again).

    Returns
    -------
    None

    Examples
    --------
    >>> import tokensampler
    >>> tokensampler.set_default_timeout(2.5)
    >>> tokensampler.get_default_timeout()
    2.5
    >>> tokensampler.set_default_timeout(None)
    """
    global _default
    _default = _check(seconds, "set_default_timeout: argument 'seconds'")
    if seconds is not None and _default is None:
        _default = math.inf


def get_default_timeout() -> Optional[float]:
    """The timeout a call without ``timeout_s`` gets.

    Parameters
    ----------
    None

    Returns
    -------
    float or None
        From :func:`set_default_timeout`, else the ``TOKENSAMPLER_TIMEOUT_S``
        environment variable, else None (no limit).

    Examples
    --------
    >>> import tokensampler
    >>> tokensampler.get_default_timeout() is None   # nothing set
    True
    """
    if _default is not None:
        return None if math.isinf(_default) else _default
    env = os.environ.get(ENV_VAR)
    if not env:
        return None
    try:
        value = float(env)
    except ValueError:
        raise ArgumentError(f"environment variable {ENV_VAR} must be a positive number of "
                            f"seconds, got {env!r}") from None
    return _check(value, f"environment variable {ENV_VAR}")


def resolve_timeout(op: str, timeout_s) -> Optional[float]:
    """The limit for one call of ``op``: its argument, else the default."""
    if timeout_s is None:
        return get_default_timeout()
    return _check(timeout_s, f"{op}: argument 'timeout_s'")


def stage(name: str) -> None:
    """Record that the calling thread's job has entered stage ``name``.

    Free when no watchdog is active on this thread (one attribute lookup).
    """
    job = getattr(_local, "job", None)
    if job is not None:
        job.enter(name)


def note(**facts) -> None:
    """Attach facts (``backend=...``) to the calling thread's job, if any."""
    job = getattr(_local, "job", None)
    if job is not None:
        job.facts.update(facts)


class Job:
    """One guarded call: the work, its progress and its outcome."""

    def __init__(self, work: Callable[[], T], device: torch.device):
        self.work = work
        self.device = device
        self.stream = torch.cuda.current_stream(device) if device.type == "cuda" else None
        self.current = "queued for the watchdog's worker thread"
        self.finished: list[str] = []
        self.facts: dict = {}
        self.lock = threading.Lock()
        self.abandoned = False
        self.inference = torch.is_inference_mode_enabled()
        self.grad = torch.is_grad_enabled()
        self.done = threading.Event()
        self.result = None
        self.error: Optional[BaseException] = None

    def enter(self, name: str) -> None:
        with self.lock:
            self.finished.append(self.current)
            self.current = name

    def stages(self) -> tuple[str, str]:
        """(the stage now, the last one finished), read together."""
        with self.lock:
            return self.current, (self.finished[-1] if self.finished else "none")

    def run(self) -> None:
        _local.job = self
        try:
            # The caller's per-thread modes, which a new thread would not have.
            with torch.inference_mode(self.inference), torch.set_grad_enabled(self.grad):
                self.enter("check arguments and choose a backend")
                if self.stream is None:
                    self.result = self.work()
                    return
                with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
                    self.result = self.work()
                    # A blocking-sync event: the thread sleeps in the driver
                    # until the GPU signals, instead of spinning on a core.
                    event = torch.cuda.Event(blocking=True)
                    event.record(self.stream)
                self.enter(f"synchronize: wait for the GPU to finish the kernels on "
                           f"{self.device}")
                event.synchronize()
        except BaseException as exc:   # handed to the caller, raised there
            self.error = exc
        finally:
            _local.job = None
            self.done.set()


class _Worker:
    """A daemon thread that runs one caller thread's jobs, one at a time.

    Each calling thread has its own worker (the caller waits for its job, so
    the queue holds at most one), so a stuck job never delays another
    thread's call. A worker whose job was abandoned exits after it, and one
    whose caller thread has ended exits too (:class:`_Token`).
    """

    def __init__(self):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="tokensampler-watchdog",
                                       daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:   # the caller's thread has ended (_submit)
                return
            job.run()
            if job.abandoned:
                return


class _Token:
    """Held in the caller's thread-local storage only: it is collected when
    that thread ends, which tells the thread's worker to end too (before,
    a worker outlived its caller, with whatever its thread held: the
    Triton backend's workspace buffers among them)."""


def _submit(job: Job) -> None:
    worker = getattr(_local, "worker", None)
    if worker is None:
        worker = _local.worker = _Worker()
        _local.token = token = _Token()
        # Not at interpreter exit: a daemon thread woken then dies mid-call
        # (the process aborted, 'terminate called without an active exception').
        weakref.finalize(token, worker.jobs.put, None).atexit = False
    worker.jobs.put(job)


def _abandon(job: Job) -> None:
    """Give up on this thread's stuck worker: its next call gets a fresh one."""
    job.abandoned = True
    _local.worker = None


def _describe(x: torch.Tensor) -> str:
    return f"{tuple(x.shape)} {str(x.dtype).replace('torch.', '')}"


def guarded(op: str, x: torch.Tensor, timeout_s, work: Callable[[], T]) -> T:
    """Run ``work`` (which launches ``op`` on ``x``'s device) under a timeout.

    Returns what ``work`` returns, ready to read; raises what it raises, or
    :class:`SamplingTimeoutError` at the deadline.
    """
    limit = resolve_timeout(op, timeout_s)
    if limit is None or not isinstance(x, torch.Tensor):
        return work()   # a non-tensor input fails its argument check at once
    device = x.device
    if device.type == "cuda":
        with torch.cuda.device(device):
            if torch.cuda.is_current_stream_capturing():
                # Nothing runs while a graph is captured, so there is nothing
                # to wait for; the replay is the caller's to guard.
                return work()
    job = Job(work, device)
    _submit(job)
    if not job.done.wait(limit):
        _abandon(job)
        raise _timeout(op, x, limit, job)
    if job.error is not None:
        raise job.error
    return job.result


def _timeout(op: str, x: torch.Tensor, limit: float, job: Job) -> SamplingTimeoutError:
    backend = job.facts.get("backend", "not chosen yet")
    current, last = job.stages()
    return SamplingTimeoutError(
        f"{op} did not finish within {limit:g} s (timeout_s): stage '{current}' never "
        f"completed; the last stage that finished was '{last}'. Input {_describe(x)} on "
        f"{x.device}, backend {backend}. Kernels already queued may still be running, and "
        f"later work on that stream waits behind them (docs/reliability.md). Run "
        f"`tokensampler doctor` to find the stage that is broken.",
        function=op, stage=current, last_finished=last, backend=backend,
        device=str(x.device), shape=tuple(x.shape), dtype=x.dtype, timeout_s=limit)
