set -x
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1 | grep -v "Location" | tail -2
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/tests PYTHONUNBUFFERED=1 FLASHINFER_CUDA_ARCH_LIST=9.0
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
(time python3 -m pytest -q -m gpu tests/test_gpu.py -x -p no:cacheprovider 2>&1 | tail -8) > $OUT/gpu_tests.txt 2>&1
cat $OUT/gpu_tests.txt
timeout 100 python3 benchmarks/agreement.py --rows 1000000 > $OUT/agree.txt 2>&1; tail -14 $OUT/agree.txt
python3 scripts/prof_kernels.py 2>&1 | grep -v Warn | tail -10
