set -x
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1 | grep -v "Location" | tail -2
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/tests PYTHONUNBUFFERED=1 FLASHINFER_CUDA_ARCH_LIST=9.0
(time python3 -m pytest -q -m gpu tests/test_gpu.py -x -p no:cacheprovider 2>&1 | tail -8) > $OUT/gpu_tests.txt 2>&1
cat $OUT/gpu_tests.txt
python3 scripts/tune_stats.py > $OUT/tune.txt 2>&1; cat $OUT/tune.txt
python3 benchmarks/bench.py --out $OUT/bench --vocab 128256 --ops top_p_0.9 plain min_p_0.1 top_k_50 --dists normal1 > $OUT/bench.txt 2>&1; tail -25 $OUT/bench.txt
timeout 100 python3 benchmarks/agreement.py --rows 1000000 > $OUT/agree.txt 2>&1; tail -14 $OUT/agree.txt
python3 scripts/prof_launch.py > $OUT/prof.txt 2>&1; head -40 $OUT/prof.txt
