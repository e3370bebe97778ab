#!/usr/bin/env bash
# Issue 4 on the GPU machine. Output under $OUT.
#   OUT=/tmp/out bash benchmarks/gpu_reliability.sh            # GPU suite, timings, campaign
#   OUT=/tmp/out bash benchmarks/gpu_reliability.sh checks     # campaign, memcheck and racecheck
#                                                            # side by side (they share the GPU)
# SKIP_SUITE / SKIP_TIMING / SKIP_CAMPAIGN skip parts; PYTEST_K selects tests;
# LIMIT (seconds, default 560) bounds each part of `checks`; RACE_ARGS passes
# vocabularies (and --fp32) to tests/sanitize_ops.py; SKIP_MEMCHECK,
# SKIP_MEMCHECK_GRAPH, SKIP_RACECHECK and SKIP_CAMPAIGN skip parts of it.
set -uo pipefail
OUT=${OUT:-gpu-reliability}
LIMIT=${LIMIT:-560}
mkdir -p "$OUT"
[ -d /tmp/site/flashinfer ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl 2>&1 | grep -v "Location" || true
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/tests PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/card.txt"

sanitize() {   # memcheck over the GPU suite at sanitizer sizes (tests/test_gpu.py)
    local log="$OUT/sanitizer-memcheck${1:+-$1}.txt"
    compute-sanitizer --version | tail -1 > "$log"
    # The caching allocator would hide out-of-bounds accesses inside its
    # blocks, but graph capture needs it: NOCACHE=0 keeps it for those tests.
    TOKENSAMPLER_SANITIZE=1 PYTORCH_NO_CUDA_MEMORY_CACHING=${NOCACHE:-1} timeout "$LIMIT" \
        compute-sanitizer --tool memcheck --print-limit 20 --error-exitcode 7 \
        python3 -m pytest -v -m gpu tests/test_gpu.py -p no:cacheprovider \
        ${2:+-k "$2"} >> "$log" 2>&1
    echo "exit $?" >> "$log"
}

racecheck() {   # tokensampler's kernels only: the suite's reference backend runs
                # PyTorch reductions, which racecheck reports as well
    local log="$OUT/sanitizer-racecheck.txt"
    timeout "$LIMIT" compute-sanitizer --tool racecheck --print-limit 1000 \
        python3 tests/sanitize_ops.py ${RACE_ARGS:-} > "$log" 2>&1
    echo "exit $?" >> "$log"
}

if [ "${1:-}" = checks ]; then
    [ -z "${SKIP_CAMPAIGN:-}" ] && timeout "$LIMIT" python3 tests/campaign.py --rows "${ROWS:-1000000}" \
        --samplers "${SAMPLERS:-probs,logits,top_p,top_k,min_p,kp_first,kp_joint,logits_kp}" \
        --json "$OUT/campaign.json" > "$OUT/campaign.log" 2>&1 &
    [ -z "${SKIP_MEMCHECK:-}" ] && sanitize "" "not graph and not warmup" &
    [ -z "${SKIP_MEMCHECK_GRAPH:-}" ] && NOCACHE=0 sanitize graph "graph or warmup" &
    [ -z "${SKIP_RACECHECK:-}" ] && racecheck &
    wait
    [ -f "$OUT/campaign.log" ] && tail -3 "$OUT/campaign.log"
    for f in "$OUT"/sanitizer-*.txt; do echo "$f"; grep -E "PASSED|FAILED|ERROR|SUMMARY|passed|failed|calls|exit" \
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
