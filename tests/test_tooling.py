"""The GPU machine's scripts, checked where CI can: they only run on a GPU, in
a device call whose minutes are scarce, so a syntax error or a bad argument
found there costs a call (the nineteenth session lost a step to one)."""

import os
import py_compile
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py")) + [
    ROOT / "tests" / name for name in ("campaign.py", "sanitize_ops.py", "hang_child.py")]


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_gpu_scripts_compile(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_parses_and_refuses_an_unknown_job(tmp_path):
    script = ROOT / "benchmarks" / "gpu_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    # An unknown job name stops the script before it installs or runs anything.
    env = dict(os.environ, JOBS="rest bogus", OUT=str(tmp_path / "out"))
    result = subprocess.run(["bash", str(script)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown job 'bogus'" in result.stderr and "large_a" in result.stderr
