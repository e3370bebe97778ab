#!/usr/bin/env bash
# What every kernel change runs on the GPU machine (no network there): the
# wheels in .whl/ (FlashInfer, pytest and their pure-Python dependencies),
# the GPU test suite, the agreement run, a hostile-row campaign, the
# per-kernel profile and compute-sanitizer over every op.
#   OUT=/tmp/out bash benchmarks/gpu_check.sh
# Two files come back under $OUT: summary.txt (also printed) and
# gpu-check.tgz, every job's whole log and every result file. (The tenth and
# eleventh sessions kept only grepped lines, and lost a failure's message.)
#
# The correctness jobs compile many kernel variants, so they run side by side
# (the suite alone took over 8 minutes serially, past one call's 10): on a
# machine with several GPUs they take GPUs 1.. in turn, and the timed profile
# runs on GPU 0 at the same time; with one GPU the profile waits for them.
# Six jobs on one GPU ran past a 410 s limit on an H100 (eleventh session),
# and so did the large sizes alone on one GPU at 395 s: they are two jobs
# now, and a four-GPU kind gives each GPU three or four. A two-GPU kind puts
# all eleven on GPU 1: they finished in 140-370 s (H200, eighteenth
# session), but at TOTAL=580 left compute-sanitizer no time. Use four where
# offered. With several GPUs compute-sanitizer is one of the jobs (after a
# plain run of the same script fills Triton's cache); with one it runs last.
# On two GPUs the twelve jobs on GPU 1 did not finish at LIMIT=430 (large_b,
# direct, rest, three campaign parts and the sanitizers cut off, nineteenth
# session): there, split the jobs over two calls with JOBS. Job names:
# large_a large_b direct rest ops warmup agr camp_probs camp_top_k
# camp_kp_joint camp_logits_kp sanitize devices (an unknown name stops the
# script before anything runs). The profile and EXTRA always run.
# PREWARM=1 first compiles the variants the jobs share, in threads
# (tokensampler.warmup at V=32000 and 128256 for each dtype, bounded by
# PREWARM_LIMIT, default 240 s), into Triton's disk cache; its time is in
# the summary. Not yet measured: try it before relying on it.
# SKIP_SANITIZE=1 skips compute-sanitizer.
# BASE="folder ..." adds the per-kernel profile of the src/ under each folder
# (kernels_<folder>.txt), to compare a branch with main in the same run.
# SPLIT=1 adds the profile with every per-row step a launch of its own
# (profile_kernels.py --split). FUSION="16 64 256" adds profile_fusion.py at
# those batches. BENCH="..." adds a bench.py run with those arguments
# (BENCH_LIMIT=seconds bounds it, default 400). EXTRA="script args" runs
# that script on GPU 0 before the profile (extra.txt; with BASE, once more
# on each base's src, extra_<folder>.txt). LIMIT=seconds bounds
# each correctness job (default 480). TOTAL=seconds (default 570) bounds the
# whole script: every step gets at most what is left of it, so the summary
# and the archive are written before a device call's limit cuts it off.
set -uo pipefail
OUT=${OUT:-gpu-check}
LIMIT=${LIMIT:-480}
TOTAL=${TOTAL:-570}
left() {
    # left [CAP]: seconds a step may take: what is left of TOTAL, less 25 s
    # for the summary and the archive, and at most CAP; at least 1.
    local l=$(( TOTAL - SECONDS - 25 ))
    [ -n "${1:-}" ] && [ "$1" -lt "$l" ] && l=$1
    echo $(( l > 1 ? l : 1 ))
}
mkdir -p "$OUT"
NAMES="large_a large_b direct rest ops warmup agr camp_probs camp_top_k camp_kp_joint camp_logits_kp sanitize devices"
for name in ${JOBS:-}; do
    [[ " $NAMES " == *" $name "* ]] || { echo "JOBS: unknown job '$name'; expected some of: $NAMES" >&2; exit 2; }
done
wanted() { [ -z "${JOBS:-}" ] || [[ " $JOBS " == *" $1 "* ]]; }
W=$(mktemp -d)   # everything goes here, then into one archive
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl 2>&1 | grep -v "Location" || true
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/tests PYTHONUNBUFFERED=1 FLASHINFER_CUDA_ARCH_LIST=9.0
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$W/card.txt"
GPUS=$(nvidia-smi -L | wc -l)
if [ -n "${PREWARM:-}" ]; then
    start=$SECONDS
    timeout -s TERM "$(left "${PREWARM_LIMIT:-240}")" python3 -c "
import torch, tokensampler as ts
report = ts.warmup([32000, 128256], [torch.float32, torch.bfloat16, torch.float16], 'cuda')
print(len(report), 'calls')" > "$W/prewarm.txt" 2>&1
    echo "prewarm: exit $?, $(( SECONDS - start )) s" >> "$W/prewarm.txt"
fi
sanitize() {
    # Every op through the kernels at V=5000 (two chunks of every path;
    # memcheck with top-p's draws in their own launch, round 0's four checked
    # at once and draw 0 first; racecheck with them in the stats tail): no
    # invalid access, no shared-memory hazard
    # (docs/reliability.md section 5). A plain run of each form first
    # compiles its variants into Triton's disk cache, so the sanitizers' time
    # goes to running, not to compiling under them (a fresh machine's compile
    # kept memcheck past 145 s, eighteenth session). The two forms share all
    # but one variant: the first plain run compiles them, then memcheck runs
    # beside the other form's plain run and racecheck. (One chain of the four
    # ran past 450 s beside eleven other jobs on a four-GPU host, and two
    # jobs that each compiled every variant did too: twentieth session.)
    python3 tests/sanitize_ops.py 5000 --fp32 --split || echo "sanitize_ops.py --split failed without a sanitizer"
    echo "plain run done at $SECONDS s"
    (
        python3 tests/sanitize_ops.py 5000 --fp32 || echo "sanitize_ops.py failed without a sanitizer"
        compute-sanitizer --tool racecheck --error-exitcode 7 --print-limit 100 \
            python3 tests/sanitize_ops.py 5000 --fp32 > "$W/racecheck.txt" 2>&1
        rc=$?
        echo "racecheck done at $SECONDS s (exit $rc)"
        exit $rc
    ) &
    local race=$!
    compute-sanitizer --tool memcheck --error-exitcode 7 python3 tests/sanitize_ops.py 5000 --fp32 --split \
        > "$W/memcheck.txt" 2>&1
    local mem=$?
    echo "memcheck done at $SECONDS s (exit $mem)"
    wait "$race"
    local racerc=$?
    # The job's exit status: nonzero if either sanitizer found anything.
    return $(( mem != 0 || racerc != 0 ))
}
SANITIZE=(bash -c "$(declare -f sanitize); W=$W; sanitize")   # as a command of its own
job=0
check() {
    # check NAME COMMAND...: one correctness job in the background, bounded by
    # LIMIT, its whole output in $W/NAME.txt. With several GPUs the jobs take
    # GPUs 1..GPUS-1 in turn (GPU 0 is the profile's); with one they share it.
    local name=$1; shift
    # JOBS="name ...": only these jobs (e.g. the ones a call before left unfinished).
    wanted "$name" || return 0
    local gpu=$(( GPUS > 1 ? 1 + job % (GPUS - 1) : 0 ))
    job=$(( job + 1 ))
    # The exit status goes to the job's log: 124 means its time bound cut it off.
    { CUDA_VISIBLE_DEVICES=$gpu timeout -s TERM "$(left "$LIMIT")" "$@" > "$W/$name.txt" 2>&1
      echo "exit $?" >> "$W/$name.txt"; } &
}
PYTEST="python3 -m pytest -v -m gpu tests/test_gpu.py -p no:cacheprovider -o faulthandler_timeout=$(( LIMIT - 30 ))"
# With several GPUs, GPU 0 runs the tests that need two visible GPUs or few
# compilations (the host-side ones) while the jobs below compile.
SERIAL="not_current or int_seeds or synchronises"
ON_ZERO=$([ "$GPUS" -gt 1 ] && echo "and not ($SERIAL)")
(
    check large_a $PYTEST -k "large_sizes and (names0 or names1)"
    check large_b $PYTEST -k "large_sizes and not (names0 or names1)"
    # The direct-launch test compiles for about 6 minutes (379 s alone on an
    # H100, eleventh session): a job of its own.
    check direct $PYTEST -k "direct_launches"
    check rest $PYTEST --durations=5 \
        -k "not large_sizes and not direct_launches and not doctor and not warmup and not watchdog and not exit and not scalar_top_k $ON_ZERO"
    check ops $PYTEST -k "(doctor or watchdog or exit) and not warmup"
    check warmup $PYTEST -k "warmup or scalar_top_k"
    check agr python3 benchmarks/agreement.py --rows "${AGREEMENT_ROWS:-1000000}"
    # Hostile rows through every sampler under the watchdog (the 10^6-row run is
    # benchmarks/gpu_reliability.sh; this smaller one goes with every kernel change).
    # Four jobs: all eight samplers in one took past 480 s and the last three
    # never ran (twelfth and thirteenth sessions; top-k-like ones take ~150 s),
    # and kp_joint (207 s) left logits_kp unfinished at 450 s (seventeenth).
    for part in probs,logits,top_p,min_p top_k,kp_first kp_joint logits_kp; do
        check "camp_${part%%,*}" python3 tests/campaign.py --rows "${CAMPAIGN_ROWS:-100000}" \
            --samplers "$part" --json "$W/campaign_${part%%,*}.json"
    done
    # With several GPUs the sanitizers are a job too, compiling beside the
    # others, rather than the last step on GPU 0 (where TOTAL left them no
    # time, eighteenth session); with one GPU they run at the end.
    if [ -z "${SKIP_SANITIZE:-}" ] && [ "$GPUS" -gt 1 ]; then
        check sanitize "${SANITIZE[@]}"
    fi
    wait
) &
checks=$!
if [ "$GPUS" -le 1 ]; then wait "$checks"; fi
if [ "$GPUS" -gt 1 ] && wanted devices; then
    # An input on a device that is not the current one (needs two visible
    # GPUs), int seeds in a graph, no host synchronisation.
    timeout -s TERM "$(left 300)" $PYTEST -k "$SERIAL" > "$W/devices.txt" 2>&1
fi
if [ -n "${EXTRA:-}" ]; then
    timeout -s TERM "$(left)" python3 $EXTRA > "$W/extra.txt" 2>&1
    for base in ${BASE:-}; do
        # The same script on each BASE checkout's src, right after, on the same GPU.
        PYTHONPATH=/tmp/site:$base/src:$PWD/tests timeout -s TERM "$(left)" python3 $EXTRA \
            > "$W/extra_$(basename "$base" | tr -d .).txt" 2>&1
    done
fi
timeout -s TERM "$(left)" python3 benchmarks/profile_kernels.py > "$W/kernels.txt" 2>&1
for base in ${BASE:-}; do
    # The same profile of another checkout's src (e.g. main, exported to an
    # ignored folder and carried), in the same run on the same card.
    PYTHONPATH=/tmp/site:$base/src timeout -s TERM "$(left)" python3 benchmarks/profile_kernels.py \
        > "$W/kernels_$(basename "$base" | tr -d .).txt" 2>&1
done
if [ -n "${SPLIT:-}" ]; then
    timeout -s TERM "$(left)" python3 benchmarks/profile_kernels.py --split > "$W/kernels_split.txt" 2>&1
fi
if [ -n "${FUSION:-}" ]; then
    # Fused against separate per-row steps at these batches (sets FUSE_ROWS).
    timeout -s TERM "$(left)" python3 benchmarks/profile_fusion.py --batch $FUSION > "$W/fusion.txt" 2>&1
fi
if [ -n "${BENCH:-}" ]; then
    # Cut off after BENCH_LIMIT seconds, it still writes what it measured.
    timeout -s TERM "$(left "${BENCH_LIMIT:-400}")" python3 benchmarks/bench.py --out "$W/bench" $BENCH \
        > "$W/bench.txt" 2>&1
fi
if [ -z "${SKIP_SANITIZE:-}" ] && [ "$GPUS" -le 1 ] && wanted sanitize; then
    timeout -s TERM "$(left)" "${SANITIZE[@]}" > "$W/sanitize.txt" 2>&1
    echo "exit $?" >> "$W/sanitize.txt"
fi
if [ "$GPUS" -gt 1 ]; then wait "$checks"; fi
{
    cat "$W/card.txt"
    [ -f "$W/prewarm.txt" ] && tail -3 "$W/prewarm.txt"
    for name in large_a large_b direct rest ops warmup devices; do
        [ -f "$W/$name.txt" ] || continue
        echo "== $name"
        grep -E "PASSED|FAILED|ERROR|passed|failed|Timeout|^E " "$W/$name.txt" | grep -v "^  File" | head -40
    done
    [ -f "$W/agr.txt" ] && { echo "== agreement"; tail -13 "$W/agr.txt"; }
    echo "== campaign"
    for f in "$W"/camp_*.txt; do
        [ -f "$f" ] && tail -5 "$f"
    done
    # Each part's totals (hangs, errors, out-of-range ids, wrong valid flags,
    # tokens outside the kept set, leaks and disagreements) over the samplers
    # it finished, and the ones it never finished: a job cut off by its time
    # bound leaves the counts of those before (fifteenth session: logits_kp
    # cut off, and the summary did not say so).
    python3 -c "
import glob, json
for f in sorted(glob.glob('$W/campaign_*.json')):
    d = json.load(open(f))
    cut = [s for s in d.get('samplers', []) if s not in d['by_sampler']]
    print(','.join(d['by_sampler']), d['total'], 'stopped:', d.get('stopped'),
          ('NOT FINISHED (cut off): ' + ','.join(cut)) if cut else '')
" 2>&1
    if [ -f "$W/sanitize.txt" ]; then
        # A sanitizer cut off by its time bound leaves no summary line: say so.
        echo "== sanitize ($(grep "^exit " "$W/sanitize.txt" | tail -1))"
        grep -E "failed|Error|error|done at" "$W/sanitize.txt" | head -8
        for name in memcheck racecheck; do
            echo "== $name"
            if grep -q "SUMMARY" "$W/$name.txt" 2>/dev/null; then tail -3 "$W/$name.txt"
            else echo "NOT FINISHED (no summary; cut off or never started)"; fi
        done
    fi
    echo "== job exits (124: cut off by the time bound)"
    grep -H "^exit " "$W"/*.txt 2>/dev/null | sed "s|$W/||"
    for f in "$W"/extra*.txt; do
        [ -f "$f" ] && { echo "== $(basename "$f" .txt)"; grep -v Warn "$f" | tail -40; }
    done
    echo "== kernels"; grep "^B=" "$W/kernels.txt" | cut -c1-160
    [ -f "$W/bench.txt" ] && { echo "== bench"; tail -2 "$W/bench.txt"; }
} > "$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"
tar -C "$W" -czf "$OUT/gpu-check.tgz" .
rm -rf "$W"
