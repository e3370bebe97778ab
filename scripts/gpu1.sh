python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1 | grep -v "Location" | tail -2
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/tests PYTHONUNBUFFERED=1 FLASHINFER_CUDA_ARCH_LIST=9.0
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 benchmarks/bench.py --out $OUT/normal1a --vocab 32000 128256 --dists normal1 > $OUT/normal1a.txt 2>&1; tail -3 $OUT/normal1a.txt
python3 benchmarks/bench.py --out $OUT/real --real .data/smollm2_logits.pt --dists real > $OUT/real.txt 2>&1; tail -3 $OUT/real.txt
