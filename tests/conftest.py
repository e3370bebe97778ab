import os

import torch

# Without a GPU, Triton kernels run on CPU tensors under the interpreter. The
# switch must be set before triton decorates the kernels, so before any test
# module imports tokensampler's Triton backend.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest

from helpers import available_backends


@pytest.fixture(params=available_backends())
def backend(request):
    """Every backend usable on this machine (the CPU: the reference, and
    the Triton kernels under the interpreter once they exist)."""
    return request.param
