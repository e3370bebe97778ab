import pytest

from helpers import available_backends


@pytest.fixture(params=available_backends())
def backend(request):
    """Every backend usable on this machine (the CPU: the reference, and
    the Triton kernels under the interpreter once they exist)."""
    return request.param
