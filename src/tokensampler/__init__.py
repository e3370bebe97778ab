"""tokensampler: exact, bounded, fast next-token sampling for PyTorch.

Names and positional arguments mirror ``flashinfer.sampling``, so engine code
switches with one import. Semantics: docs/semantics.md. Importing is cheap:
no device probing and no kernel compilation happen here.
"""

from .errors import (ArgumentError, ArgumentTypeError, BackendFailedError,
                     BackendUnavailableError, FallbackWarning, SamplingTimeoutError,
                     TokenSamplerError)
from .sampling import (min_p_sampling_from_probs, sampling_from_logits, sampling_from_probs,
                       softmax, top_k_mask_logits, top_k_renorm_probs,
                       top_k_sampling_from_probs, top_k_top_p_sampling_from_logits,
                       top_k_top_p_sampling_from_probs, top_p_renorm_probs,
                       top_p_sampling_from_probs)
from .ops import warmup
from .watchdog import get_default_timeout, set_default_timeout

__version__ = "0.1.0"

__all__ = [
    "sampling_from_probs", "sampling_from_logits", "top_p_sampling_from_probs",
    "top_k_sampling_from_probs", "min_p_sampling_from_probs",
    "top_k_top_p_sampling_from_probs", "top_k_top_p_sampling_from_logits",
    "top_p_renorm_probs", "top_k_renorm_probs", "top_k_mask_logits", "softmax",
    "warmup", "set_default_timeout", "get_default_timeout",
    "TokenSamplerError", "ArgumentError", "ArgumentTypeError", "BackendUnavailableError",
    "BackendFailedError", "SamplingTimeoutError", "FallbackWarning",
]
