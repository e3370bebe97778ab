#!/usr/bin/env bash
# What every kernel change runs on the GPU machine (no network there): the
# wheels in .whl/ (FlashInfer and pytest, see benchmarks/RESULTS.md), the GPU
# test suite, the agreement run, the per-kernel profile, a hostile-row campaign
# and compute-sanitizer over every op. Output under $OUT.
#   OUT=/tmp/out bash benchmarks/gpu_check.sh
# SKIP_SANITIZE=1 skips the compute-sanitizer step (it needs a machine that
# allows it: the H100 kind did, the H200 one did not); BENCH="..." adds a
# bench.py run with those arguments.
set -euo pipefail
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl 2>&1 | grep -v "Location" || true
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/tests PYTHONUNBUFFERED=1 FLASHINFER_CUDA_ARCH_LIST=9.0
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/card.txt"
python3 -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider 2>&1 | tail -4 | tee "$OUT/gpu_tests.txt"
python3 benchmarks/agreement.py --rows 1000000 2>&1 | tail -12 | tee "$OUT/agreement.txt"
python3 benchmarks/profile_kernels.py 2>&1 | grep -v Warn | tee "$OUT/kernels.txt"
# Hostile rows through every sampler under the watchdog (the 10^6-row run is
# benchmarks/gpu_reliability.sh; this smaller one goes with every kernel change).
python3 tests/campaign.py --rows "${CAMPAIGN_ROWS:-100000}" --json "$OUT/campaign.json" 2>&1 \
    | tail -12 | tee "$OUT/campaign.txt"
if [ -z "${SKIP_SANITIZE:-}" ]; then
    # Every op through the kernels at V=5000 (two chunks, the top-p bracket):
    # no invalid access, no shared-memory hazard (docs/reliability.md section 5).
    compute-sanitizer --tool memcheck --error-exitcode 7 python3 tests/sanitize_ops.py 5000 \
        2>&1 | tail -3 | tee "$OUT/memcheck.txt"
    compute-sanitizer --tool racecheck --print-limit 100 python3 tests/sanitize_ops.py 5000 --fp32 \
        2>&1 | tail -3 | tee "$OUT/racecheck.txt"
fi
if [ -n "${BENCH:-}" ]; then
    python3 benchmarks/bench.py --out "$OUT/bench" $BENCH 2>&1 | tail -2
fi
