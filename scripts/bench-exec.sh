#!/usr/bin/env bash
# Wrapper overhead (SPEC section 8): the whole-process cost of
# `cc-ci-run exec -- true` against the shell idiom it replaces,
#   setsid CMD & PID=$!; trap 'kill -TERM -- -$PID' TERM EXIT; wait $PID
# run with `bash -c`. Both are started by this shell the same way and timed
# from fork to reaped exit. They run alternately, the order flipping every
# pair, so drift in machine load falls on both; the ratio is the median of
# the per-pair ratios.
#
# Usage: scripts/bench-exec.sh [PAIRS]   (default 50, at least 30)
# Prints: exec_overhead: wrapper MEDIAN ms, shell idiom MEDIAN ms, ratio R
set -euo pipefail
cd "$(dirname "$0")/.."

pairs=${1:-50}
if ((pairs < 30)); then
    echo "bench-exec: at least 30 pairs, got $pairs" >&2
    exit 2
fi
# EPOCHREALTIME reads the clock without forking a `date`.
if ((BASH_VERSINFO[0] < 5)); then
    echo "bench-exec: needs bash 5 (EPOCHREALTIME)" >&2
    exit 2
fi

# CCCI_BENCH_BIN: another build to measure (see bench.sh).
if [ -z "${CCCI_BENCH_BIN:-}" ]; then cargo build --release --quiet; fi
bin=${CCCI_BENCH_BIN:-$PWD/target/release/cc-ci-run}
# shellcheck disable=SC2016 # expanded by the inner bash, not here
idiom='setsid true & PID=$!; trap '\''kill -TERM -- -$PID'\'' TERM EXIT; wait $PID'

# One timed run of each, in microseconds (EPOCHREALTIME without its
# separator, which follows the locale). stderr is dropped for both: the
# idiom's EXIT trap complains that the group it kills is already gone.
run_wrapper() {
    local t0 t1
    t0=${EPOCHREALTIME/[.,]/}
    "$bin" exec -- true >/dev/null 2>&1
    t1=${EPOCHREALTIME/[.,]/}
    wrapper_us=$((10#$t1 - 10#$t0))
}
run_idiom() {
    local t0 t1
    t0=${EPOCHREALTIME/[.,]/}
    bash -c "$idiom" >/dev/null 2>&1
    t1=${EPOCHREALTIME/[.,]/}
    idiom_us=$((10#$t1 - 10#$t0))
}

# Warm the page cache and the dynamic loader for both.
for _ in 1 2 3; do run_wrapper; run_idiom; done

samples=$(mktemp)
trap 'rm -f "$samples"' EXIT
for ((i = 0; i < pairs; i++)); do
    if ((i % 2 == 0)); then
        run_wrapper; run_idiom
    else
        run_idiom; run_wrapper
    fi
    echo "$wrapper_us $idiom_us" >>"$samples"
done

awk '
function median(a, n,    i, j, t) {
    for (i = 2; i <= n; i++) {          # insertion sort: n is small
        t = a[i]
        for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
        a[j + 1] = t
    }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ n++; w[n] = $1; s[n] = $2; r[n] = $1 / $2 }
END {
    printf "exec_overhead: wrapper %.3f ms, shell idiom %.3f ms, ratio %.2f\n",
        median(w, n) / 1000, median(s, n) / 1000, median(r, n)
}' "$samples"
