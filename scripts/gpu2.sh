python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1 | grep -v "Location" | tail -2
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/tests PYTHONUNBUFFERED=1 FLASHINFER_CUDA_ARCH_LIST=9.0
python3 scripts/prof_kernels.py 2>&1 | grep -v Warning | tail -12
python3 scripts/prof_launch.py 2>&1 | head -3
