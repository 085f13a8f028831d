#!/usr/bin/env bash
# Wrapper overhead (SPEC section 8): the whole-process cost of
# `cc-ci-run exec -- true` against the shell idiom it replaces,
#   setsid CMD & PID=$!; trap 'kill -TERM -- -$PID' TERM EXIT; wait $PID
# run under /bin/sh (what Drone runs: the SPEC's baseline) and under bash.
# Each is started by this shell the same way and timed from fork to reaped
# exit. They run in rounds, the order rotating every round, so drift in
# machine load falls on all; each ratio is the median of the per-round
# ratios. With CCCI_BENCH_BASELINE_BIN (an older build) that wrapper is
# timed in the same rounds, and the new/old ratio printed.
#
# Usage: scripts/bench-exec.sh [ROUNDS]   (default 50, at least 30)
# Prints: exec_overhead: wrapper MEDIAN ms, /bin/sh idiom MEDIAN ms (ratio R),
#         bash idiom MEDIAN ms (ratio R)[, baseline wrapper MEDIAN ms (ratio R)]
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-50}
if ((rounds < 30)); then
    echo "bench-exec: at least 30 rounds, got $rounds" >&2
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
base=${CCCI_BENCH_BASELINE_BIN:-}
# shellcheck disable=SC2016 # expanded by the inner shell, not here
idiom='setsid true & PID=$!; trap '\''kill -TERM -- -$PID'\'' TERM EXIT; wait $PID'

# One timed run, in microseconds (EPOCHREALTIME without its separator,
# which follows the locale), into REPLY. stderr is dropped for all: the
# idiom's EXIT trap complains that the group it kills is already gone.
timed() {
    local t0 t1
    t0=${EPOCHREALTIME/[.,]/}
    "$@" >/dev/null 2>&1 || true
    t1=${EPOCHREALTIME/[.,]/}
    REPLY=$((10#$t1 - 10#$t0))
}
run_one() {
    case $1 in
    wrapper) timed "$bin" exec -- true ;;
    sh) timed /bin/sh -c "$idiom" ;;
    bash) timed bash -c "$idiom" ;;
    base) timed "$base" exec -- true ;;
    esac
}

kinds=(wrapper sh bash)
if [ -n "$base" ]; then kinds+=(base); fi
# Warm the page cache and the dynamic loader for all.
for _ in 1 2 3; do for k in "${kinds[@]}"; do run_one "$k"; done; done

samples=$(mktemp)
trap 'rm -f "$samples"' EXIT
n=${#kinds[@]}
for ((i = 0; i < rounds; i++)); do
    declare -A us=()
    for ((j = 0; j < n; j++)); do
        k=${kinds[$(((i + j) % n))]}
        run_one "$k"
        us[$k]=$REPLY
    done
    echo "${us[wrapper]} ${us[sh]} ${us[bash]} ${us[base]:-0}" >>"$samples"
done

awk -v with_base="${base:+1}" '
function median(a, n,    i, j, t) {
    for (i = 2; i <= n; i++) {          # insertion sort: n is small
        t = a[i]
        for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
        a[j + 1] = t
    }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ n++; w[n] = $1; s[n] = $2; b[n] = $3; o[n] = $4
  rs[n] = $1 / $2; rb[n] = $1 / $3; if (with_base) ro[n] = $1 / $4 }
END {
    printf "exec_overhead: wrapper %.3f ms, /bin/sh idiom %.3f ms (ratio %.2f), bash idiom %.3f ms (ratio %.2f)",
        median(w, n) / 1000, median(s, n) / 1000, median(rs, n), median(b, n) / 1000, median(rb, n)
    if (with_base) printf ", baseline wrapper %.3f ms (ratio %.2f new/baseline)", median(o, n) / 1000, median(ro, n)
    printf "\n"
}' "$samples"
