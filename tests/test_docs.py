"""Every docstring example runs and prints what it shows."""

import doctest

import pytest

import tokensampler.ops
import tokensampler.rng
import tokensampler.sampling
import tokensampler.watchdog


@pytest.mark.parametrize("module", [tokensampler.sampling, tokensampler.rng,
                                    tokensampler.watchdog, tokensampler.ops])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_every_public_function_has_an_example():
    import tokensampler

    for name in tokensampler.__all__:
        obj = getattr(tokensampler, name)
        if callable(obj) and not isinstance(obj, type):
            assert ">>>" in (obj.__doc__ or ""), name
            assert "Parameters" in obj.__doc__ and "Returns" in obj.__doc__, name


def test_import_does_no_work():
    """Importing tokensampler must not import triton or touch a device."""
    import subprocess
    import sys

    code = ("import sys, tokensampler; "
            "print('triton' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
