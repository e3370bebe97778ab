"""Exceptions raised by tokensampler.

Every error names the function and the argument (or stage), what was expected
and what came. Argument errors subclass the built-in ``ValueError`` or
``TypeError`` as well, so ``except ValueError`` keeps working.
"""


class TokenSamplerError(Exception):
    """Base class of every exception tokensampler raises on purpose."""


class ArgumentError(TokenSamplerError, ValueError):
    """An argument has the right type but a wrong value, shape or device."""


class ArgumentTypeError(TokenSamplerError, TypeError):
    """An argument has the wrong type or dtype."""


class BackendUnavailableError(TokenSamplerError, RuntimeError):
    """The backend that was asked for cannot run here; the message says why."""


class BackendFailedError(TokenSamplerError, RuntimeError):
    """A backend that was named explicitly failed to compile or launch.

    The message names the function, the stage and the device; the original
    exception is chained as ``__cause__``.
    """


class SamplingTimeoutError(TokenSamplerError, TimeoutError):
    """A call did not finish within its ``timeout_s``.

    Besides the message, the attributes ``function``, ``stage`` (the stage
    that never finished), ``last_finished``, ``backend``, ``device``,
    ``shape``, ``dtype`` and ``timeout_s`` say what was stuck where.
    """

    def __init__(self, message: str, **facts):
        super().__init__(message)
        self.function = facts.get("function")
        self.stage = facts.get("stage")
        self.last_finished = facts.get("last_finished")
        self.backend = facts.get("backend")
        self.device = facts.get("device")
        self.shape = facts.get("shape")
        self.dtype = facts.get("dtype")
        self.timeout_s = facts.get("timeout_s")


class FallbackWarning(UserWarning):
    """The automatic backend choice fell back to the reference backend
    because the Triton kernels could not compile or launch on a device."""
