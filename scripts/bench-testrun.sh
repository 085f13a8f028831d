#!/usr/bin/env bash
# Benchmarks of the recipe test runner (SPEC section 8), printed as ratios:
# - per-test spawn overhead: many trivial tests through `cc-ci-run test`,
#   less the same tests run by a plain shell loop and less the runner's own
#   start and end (an empty suite), against the earlier runner's 500 us;
# - parallel efficiency with 1, 2 and 4 workers on sleep tests
#   (ideal time / measured time);
# - checkpoint write time per passed test (a journal append: one write(2);
#   see src/testrun/checkpoint.rs; `bench_checkpoint DIR N compare` puts it
#   beside the earlier release's whole-file rewrite).
# - output drain: MB/s the runner drains from a test that floods stdout
#   (BENCH_FLOOD_MB, default 100, lines of 100 bytes) and from tests whose
#   output stays under --test-output-limit (every line logged), against
#   the pipeline alone into /dev/null; CCCI_BENCH_BEFORE names an older
#   binary measured side by side (ratio new/old of the MB/s).
# Work files go under target/ (a real disk, so fsync costs what it costs).
# Knobs: BENCH_TRIVIAL (default 300 tests), BENCH_SLEEP_TESTS (8),
# BENCH_SLEEP (0.5 s), BENCH_ROUNDS (3, the median is kept).
set -euo pipefail
cd "$(dirname "$0")/.."

# CCCI_BENCH_BIN and CCCI_BENCH_CKPT: another build to measure (see bench.sh).
if [ -z "${CCCI_BENCH_BIN:-}" ]; then
    cargo build --release --quiet --bin cc-ci-run --example bench_checkpoint
fi
BIN="${CCCI_BENCH_BIN:-$PWD/target/release/cc-ci-run}"
CKPT="${CCCI_BENCH_CKPT:-$PWD/target/release/examples/bench_checkpoint}"
WORK="$PWD/target/bench-testrun"
rm -rf "$WORK"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT

TRIVIAL=${BENCH_TRIVIAL:-300}
SLEEPERS=${BENCH_SLEEP_TESTS:-8}
NAP=${BENCH_SLEEP:-0.5}
ROUNDS=${BENCH_ROUNDS:-3}
BASELINE_US=500

now_ns() { date +%s%N; }

# median of the numbers on stdin
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Runs the runner quietly; docker is `true` (no containers, near-zero cost).
runner() {
    CCCI_DOCKER=/bin/true "$BIN" test --report-dir "$WORK/report" "$@" 2>/dev/null
}

make_tests() { # DIR COUNT BODY
    mkdir -p "$1"
    for i in $(seq -w 1 "$2"); do
        printf '#!/bin/sh\n%s\n' "$3" > "$1/t$i"
        chmod +x "$1/t$i"
    done
}

time_ns() { # CMD... -> elapsed ns on stdout
    local t0 t1
    t0=$(now_ns)
    "$@" > /dev/null
    t1=$(now_ns)
    echo $((t1 - t0))
}

loop_tests() { for t in "$1"/*; do "$t"; done; }

# --- per-test spawn overhead ------------------------------------------------
make_tests "$WORK/trivial" "$TRIVIAL" 'exit 0'
mkdir -p "$WORK/empty"
runner "$WORK/trivial" > /dev/null # warm the page cache
suite=$(for _ in $(seq "$ROUNDS"); do time_ns runner "$WORK/trivial"; done | median)
empty=$(for _ in $(seq "$ROUNDS"); do time_ns runner "$WORK/empty"; done | median)
shell=$(for _ in $(seq "$ROUNDS"); do time_ns loop_tests "$WORK/trivial"; done | median)
per_test_us=$(awk -v s="$suite" -v e="$empty" -v l="$shell" -v n="$TRIVIAL" \
    'BEGIN { printf "%.0f", (s - e - l) / n / 1000 }')
total_us=$(awk -v s="$suite" -v n="$TRIVIAL" 'BEGIN { printf "%.0f", s / n / 1000 }')
printf 'spawn overhead: %s us per test over a shell loop (%s us per test in all, %s tests); %.2fx the earlier runner'"'"'s %s us\n' \
    "$per_test_us" "$total_us" "$TRIVIAL" "$(awk -v a="$per_test_us" -v b="$BASELINE_US" 'BEGIN { print a / b }')" "$BASELINE_US"

# --- checkpoint write ---------------------------------------------------------
read -r ck_mean ck_median < <("$CKPT" "$WORK/ckpt" "$TRIVIAL")
printf 'checkpoint write: %s us mean, %s us median (%s passed tests); %.2fx the per-test overhead\n' \
    "$ck_mean" "$ck_median" "$TRIVIAL" "$(awk -v c="$ck_median" -v p="$per_test_us" 'BEGIN { if (p > 0) print c / p; else print 0 }')"

# --- parallel efficiency -------------------------------------------------------
make_tests "$WORK/sleepers" "$SLEEPERS" "sleep $NAP"
for w in 1 2 4; do
    if [ "$w" = 1 ]; then args=(); else args=(--parallel --max-workers "$w"); fi
    ns=$(for _ in $(seq "$ROUNDS"); do time_ns runner "${args[@]}" "$WORK/sleepers"; done | median)
    awk -v ns="$ns" -v n="$SLEEPERS" -v nap="$NAP" -v w="$w" 'BEGIN {
        waves = int((n + w - 1) / w)
        ideal = waves * nap
        printf "parallel efficiency, %d worker(s): %d x %ss tests in %.2fs, ideal %.2fs: %.1f%%\n",
            w, n, nap, ns / 1e9, ideal, 100 * ideal / (ns / 1e9)
    }'
done

# --- output drain ----------------------------------------------------------------
FLOOD_MB=${BENCH_FLOOD_MB:-100}
make_tests "$WORK/flood" 1 "head -c $((FLOOD_MB * 1000000)) /dev/zero | tr '\\0' x | fold -w 99"
# Normal output: 60 tests of 3,000 lines of 100 bytes (300 KB each: with
# timestamps and tags, under half the 1 MiB default as logged), every line
# shown on stderr and in the log.
make_tests "$WORK/normal" 60 "head -c 300000 /dev/zero | tr '\\0' x | fold -w 99"
floor_ns=$(for _ in $(seq "$ROUNDS"); do time_ns sh "$WORK/flood/t1"; done | median)
quiet() { "$@" 2>/dev/null; }
drain() { # BIN DIR MB -> MB/s
    local bin=$1 dir=$2 mb=$3 ns
    ns=$(for _ in $(seq "$ROUNDS"); do time_ns quiet env CCCI_DOCKER=/bin/true "$bin" test --report-dir "$dir/report" "$dir/t"; done | median)
    awk -v ns="$ns" -v mb="$mb" 'BEGIN { printf "%.1f", mb / (ns / 1e9) }'
}
for kind in flood normal; do
    rm -rf "$WORK/drain"
    mkdir -p "$WORK/drain"
    cp -r "$WORK/$kind" "$WORK/drain/t"
    if [ "$kind" = flood ]; then mb=$FLOOD_MB; else mb=18; fi
    new=$(drain "$BIN" "$WORK/drain" "$mb")
    line="output drain, $kind ($mb MB): $new MB/s"
    if [ -n "${CCCI_BENCH_BEFORE:-}" ]; then
        old=$(drain "$CCCI_BENCH_BEFORE" "$WORK/drain" "$mb")
        line="$line, the older binary $old MB/s (ratio $(awk -v a="$new" -v b="$old" 'BEGIN { printf "%.2f", a / b }') new/old)"
    fi
    if [ "$kind" = flood ]; then
        line="$line; the pipeline alone into /dev/null: $(awk -v ns="$floor_ns" -v mb="$mb" 'BEGIN { printf "%.1f", mb / (ns / 1e9) }') MB/s"
    fi
    echo "$line"
done
