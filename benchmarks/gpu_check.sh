#!/usr/bin/env bash
# What every kernel change runs on the GPU machine (no network there): the
# wheels in .whl/ (FlashInfer and pytest, see benchmarks/RESULTS.md), the GPU
# test suite, the agreement run, a hostile-row campaign, the per-kernel
# profile and compute-sanitizer over every op. Output under $OUT (8 files at
# most, what the device tool brings back).
#   OUT=/tmp/out bash benchmarks/gpu_check.sh
# The correctness jobs compile many kernel variants, so they run side by side
# (the suite alone took over 8 minutes serially, past one call's 10): on a
# machine with two GPUs they use the second, and the timed profile runs on the
# first at the same time; with one GPU the profile waits for them.
# The first GPU then runs compute-sanitizer too (SKIP_SANITIZE=1 skips it).
# BASE="folder ..." adds the per-kernel profile of the src/ under each folder
# (one more file each, kernels_<folder>.txt), to compare a branch with main
# in the same run. SPLIT=1 adds the profile with every per-row step a launch
# of its own (profile_kernels.py --split; one more file). FUSION="16 64 256"
# adds profile_fusion.py at those batches (one more file).
# BENCH="..." adds a bench.py run with those arguments (3 more files: use it
# with SKIP_SANITIZE=1 to stay within 8; BENCH_LIMIT=seconds bounds it,
# default 400). LIMIT=seconds bounds each correctness job (default 480).
# One call of the device tool holds all of it on a two-GPU kind; on one GPU,
# run the sanitizers in a second call.
set -uo pipefail
OUT=${OUT:-gpu-check}
LIMIT=${LIMIT:-480}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl 2>&1 | grep -v "Location" || true
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/tests PYTHONUNBUFFERED=1 FLASHINFER_CUDA_ARCH_LIST=9.0
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/card.txt"
GPUS=$(nvidia-smi -L | wc -l)
CHECK_GPU=$(( GPUS > 1 ? 1 : 0 ))
tmp=$(mktemp -d)
(
    export CUDA_VISIBLE_DEVICES=$CHECK_GPU
    timeout -s TERM "$LIMIT" python3 -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider \
        -k large_sizes > "$tmp/large.txt" 2>&1 &
    # The doctor and watchdog tests in a job of their own, and the warm-up
    # test (it compiles every variant) in another: together, after the rest
    # of the suite, they were cut off by the limit (seventh and ninth sessions).
    timeout -s TERM "$LIMIT" python3 -m pytest -v -m gpu tests/test_gpu.py -p no:cacheprovider \
        -k "not large_sizes and not doctor and not warmup and not watchdog and not exit" \
        --durations=5 > "$tmp/rest.txt" 2>&1 &
    timeout -s TERM "$LIMIT" python3 -m pytest -v -m gpu tests/test_gpu.py -p no:cacheprovider \
        -k "(doctor or watchdog or exit) and not warmup" > "$tmp/ops.txt" 2>&1 &
    timeout -s TERM "$LIMIT" python3 -m pytest -v -m gpu tests/test_gpu.py -p no:cacheprovider \
        -k "warmup" > "$tmp/warmup.txt" 2>&1 &
    timeout -s TERM "$LIMIT" python3 benchmarks/agreement.py --rows 1000000 > "$tmp/agr.txt" 2>&1 &
    # Hostile rows through every sampler under the watchdog (the 10^6-row run is
    # benchmarks/gpu_reliability.sh; this smaller one goes with every kernel change).
    timeout -s TERM "$LIMIT" python3 tests/campaign.py --rows "${CAMPAIGN_ROWS:-100000}" \
        --json "$tmp/campaign.json" > "$tmp/camp.txt" 2>&1 &
    wait
) &
checks=$!
if [ "$GPUS" -le 1 ]; then wait "$checks"; fi
python3 benchmarks/profile_kernels.py 2>&1 | grep -v Warn > "$OUT/kernels.txt"
for base in ${BASE:-}; do
    # The same profile of another checkout's src (e.g. main, exported to an
    # ignored folder and carried), in the same run on the same card.
    PYTHONPATH=/tmp/site:$base/src python3 benchmarks/profile_kernels.py 2>&1 | grep -v Warn \
        > "$OUT/kernels_$(basename "$base" | tr -d .).txt"
done
if [ -n "${SPLIT:-}" ]; then
    python3 benchmarks/profile_kernels.py --split 2>&1 | grep -v Warn > "$OUT/kernels_split.txt"
fi
if [ -n "${FUSION:-}" ]; then
    # Fused against separate per-row steps at these batches (sets FUSE_ROWS).
    python3 benchmarks/profile_fusion.py --batch $FUSION 2>&1 | grep -v Warn > "$OUT/fusion.txt"
fi
if [ -n "${BENCH:-}" ]; then
    # Cut off after BENCH_LIMIT seconds, it still writes what it measured.
    timeout -s TERM "${BENCH_LIMIT:-400}" python3 benchmarks/bench.py --out "$OUT/bench" $BENCH \
        2>&1 | tail -2
fi
if [ -z "${SKIP_SANITIZE:-}" ]; then
    # Every op through the kernels at V=5000 (two chunks of every path; memcheck
    # with top-p's draws in their own launch, racecheck in the stats tail):
    # no invalid access, no shared-memory hazard (docs/reliability.md section 5).
    compute-sanitizer --tool memcheck --error-exitcode 7 python3 tests/sanitize_ops.py 5000 --fp32 --split \
        2>&1 | tail -3 > "$OUT/memcheck.txt"
    compute-sanitizer --tool racecheck --print-limit 100 python3 tests/sanitize_ops.py 5000 --fp32 \
        2>&1 | tail -3 > "$OUT/racecheck.txt"
fi
wait "$checks"
{ grep -v "^$" "$tmp/large.txt" | tail -4
  grep -h "PASSED\|FAILED\|ERROR\|passed\|failed\|s call" "$tmp/rest.txt" "$tmp/ops.txt" \
      "$tmp/warmup.txt"; } > "$OUT/gpu_tests.txt"
tail -12 "$tmp/agr.txt" > "$OUT/agreement.txt"
tail -12 "$tmp/camp.txt" > "$OUT/campaign.txt"
tail -n +1 "$OUT"/*.txt
rm -rf "$tmp"
