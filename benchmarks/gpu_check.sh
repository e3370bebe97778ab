#!/usr/bin/env bash
# What every kernel change runs on the GPU machine (no network there): the
# wheels in .whl/ (FlashInfer and pytest, see benchmarks/RESULTS.md), the GPU
# test suite, the agreement run, a hostile-row campaign, the per-kernel
# profile and compute-sanitizer over every op. Output under $OUT (8 files at
# most, what the device tool brings back).
#   OUT=/tmp/out bash benchmarks/gpu_check.sh
# The correctness jobs compile many kernel variants, so they run side by side
# (the suite alone took over 8 minutes serially, past one call's 10): on a
# machine with several GPUs they take GPUs 1.. in turn, and the timed profile
# runs on GPU 0 at the same time; with one GPU the profile waits for them.
# Six jobs on one GPU ran past a 410 s limit on an H100 (eleventh session):
# a four-GPU kind gives each GPU two.
# The first GPU then runs compute-sanitizer too (SKIP_SANITIZE=1 skips it).
# BASE="folder ..." adds the per-kernel profile of the src/ under each folder
# (one more file each, kernels_<folder>.txt), to compare a branch with main
# in the same run. SPLIT=1 adds the profile with every per-row step a launch
# of its own (profile_kernels.py --split; one more file). FUSION="16 64 256"
# adds profile_fusion.py at those batches (one more file).
# BENCH="..." adds a bench.py run with those arguments (3 more files: use it
# with SKIP_SANITIZE=1 to stay within 8; BENCH_LIMIT=seconds bounds it,
# default 400). LIMIT=seconds bounds each correctness job (default 480).
# EXTRA="script args" runs that script on GPU 0 before the profile (one more
# file, extra.txt). One call of the device tool holds all of it on a
# four-GPU kind; on one GPU, run the sanitizers in a second call.
set -uo pipefail
OUT=${OUT:-gpu-check}
LIMIT=${LIMIT:-480}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl 2>&1 | grep -v "Location" || true
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/tests PYTHONUNBUFFERED=1 FLASHINFER_CUDA_ARCH_LIST=9.0
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/card.txt"
GPUS=$(nvidia-smi -L | wc -l)
tmp=$(mktemp -d)
job=0
check() {
    # check NAME COMMAND...: one correctness job in the background, bounded by
    # LIMIT, output in $tmp/NAME.txt. With several GPUs the jobs take GPUs
    # 1..GPUS-1 in turn (GPU 0 is the profile's); with one they share it.
    local name=$1; shift
    local gpu=$(( GPUS > 1 ? 1 + job % (GPUS - 1) : 0 ))
    job=$(( job + 1 ))
    CUDA_VISIBLE_DEVICES=$gpu timeout -s TERM "$LIMIT" "$@" > "$tmp/$name.txt" 2>&1 &
}
(
    check large python3 -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider -k large_sizes
    # The doctor and watchdog tests in a job of their own, and the warm-up
    # test (it compiles every variant) in another: together, after the rest
    # of the suite, they were cut off by the limit (seventh and ninth sessions).
    check rest python3 -m pytest -v -m gpu tests/test_gpu.py -p no:cacheprovider \
        -k "not large_sizes and not doctor and not warmup and not watchdog and not exit" \
        --durations=5
    check ops python3 -m pytest -v -m gpu tests/test_gpu.py -p no:cacheprovider \
        -k "(doctor or watchdog or exit) and not warmup"
    check warmup python3 -m pytest -v -m gpu tests/test_gpu.py -p no:cacheprovider -k "warmup"
    check agr python3 benchmarks/agreement.py --rows "${AGREEMENT_ROWS:-1000000}"
    # Hostile rows through every sampler under the watchdog (the 10^6-row run is
    # benchmarks/gpu_reliability.sh; this smaller one goes with every kernel change).
    check camp python3 tests/campaign.py --rows "${CAMPAIGN_ROWS:-100000}" \
        --json "$tmp/campaign.json"
    wait
) &
checks=$!
if [ "$GPUS" -le 1 ]; then wait "$checks"; fi
if [ -n "${EXTRA:-}" ]; then
    python3 $EXTRA 2>&1 | grep -v Warn > "$OUT/extra.txt"
fi
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
