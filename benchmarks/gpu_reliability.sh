#!/usr/bin/env bash
# Issue 4 on the GPU machine. Output under $OUT.
#   OUT=/tmp/out bash benchmarks/gpu_reliability.sh            # GPU suite, timings, campaign
#   OUT=/tmp/out bash benchmarks/gpu_reliability.sh checks     # campaign, memcheck and racecheck
#                                                            # side by side (they share the GPU)
# SKIP_SUITE / SKIP_TIMING / SKIP_CAMPAIGN skip parts; PYTEST_K selects tests;
# LIMIT (seconds, default 560) bounds each part of `checks`.
set -uo pipefail
OUT=${OUT:-gpu-reliability}
LIMIT=${LIMIT:-560}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl 2>&1 | grep -v "Location" || true
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/tests PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/card.txt"

sanitize() {   # compute-sanitizer over the GPU suite at sanitizer sizes (tests/test_gpu.py)
    local tool=$1 log="$OUT/sanitizer-$1${2:+-$2}.txt" filter=()
    compute-sanitizer --version | tail -1 > "$log"
    # Only tokensampler's kernels are checked for races: PyTorch's own
    # reductions (the reference backend's) are reported by racecheck too.
    [ "$tool" = racecheck ] && filter=(--kernel-name-exclude "regex=at::native|cub::")
    # The caching allocator would hide out-of-bounds accesses inside its
    # blocks, but graph capture needs it: NOCACHE=0 keeps it for those tests.
    TOKENSAMPLER_SANITIZE=1 PYTORCH_NO_CUDA_MEMORY_CACHING=${NOCACHE:-1} timeout "$LIMIT" \
        compute-sanitizer --tool "$tool" "${filter[@]}" --print-limit 20 --error-exitcode 7 \
        python3 -m pytest -v -m gpu tests/test_gpu.py -p no:cacheprovider \
        ${3:+-k "$3"} >> "$log" 2>&1
    echo "exit $?" >> "$log"
}

if [ "${1:-}" = checks ]; then
    timeout "$LIMIT" python3 tests/campaign.py --rows "${ROWS:-1000000}" \
        --samplers "${SAMPLERS:-probs,logits,top_p,top_k,min_p,kp_first,kp_joint,logits_kp}" \
        --json "$OUT/campaign.json" > "$OUT/campaign.log" 2>&1 &
    [ -z "${SKIP_MEMCHECK:-}" ] && sanitize memcheck "" "${PYTEST_K:-}" &
    [ -z "${SKIP_MEMCHECK_GRAPH:-}" ] && NOCACHE=0 sanitize memcheck graph "graph or warmup" &
    sanitize racecheck "" "${PYTEST_K:-}" &
    wait
    tail -3 "$OUT/campaign.log"
    for f in "$OUT"/sanitizer-*.txt; do echo "$f"; grep -E "PASSED|FAILED|ERROR|passed|failed|exit" \
        "$f" | tail -8; done
    exit 0
fi
if [ -z "${SKIP_SUITE:-}" ]; then
    python3 -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider -rP \
        ${PYTEST_K:+-k "$PYTEST_K"} 2>&1 | grep -v "^$" | tail -80 > "$OUT/gpu_tests.txt"
    tail -3 "$OUT/gpu_tests.txt"
fi
if [ -z "${SKIP_TIMING:-}" ]; then
    python3 benchmarks/reliability_timing.py ${TIMING_ARGS:-} > "$OUT/timing.json" \
        2> "$OUT/timing.err"
    cat "$OUT/timing.json"
fi
if [ -z "${SKIP_CAMPAIGN:-}" ]; then
    python3 tests/campaign.py --rows "${ROWS:-1000000}" --json "$OUT/campaign.json" 2>&1 | tail -12
fi
