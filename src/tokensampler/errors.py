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
