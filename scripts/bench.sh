#!/usr/bin/env bash
# Benchmarks of SPEC section 8. Each figure is one line,
#   name: value (ratio ...)
# measured side by side with its baseline in the same run. Each area is a
# function (bench_lock, ...) called from main; figures are medians, so a
# noisy neighbour on a shared machine moves them less than a mean.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="$PWD/target/release/cc-ci-run"
WORK=""

setup() {
	cargo build --release --quiet
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/ccci-bench.XXXXXX")
	trap 'rm -rf "$WORK"' EXIT
}

# Wall-clock microseconds, without forking (`date` would cost a process).
now_us() {
	local t=$EPOCHREALTIME
	REPLY=${t/./}
}

# Median wall-clock ns of a whole command over N runs: median_ns N CMD...
median_ns() {
	local n=$1
	shift
	local samples=() t0 i
	for ((i = 0; i < n; i++)); do
		now_us
		t0=$REPLY
		"$@" >/dev/null
		now_us
		samples+=($(((REPLY - t0) * 1000)))
	done
	printf '%s\n' "${samples[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# A duration in ns, printed for humans (us below 1 ms, else ms).
human_ns() {
	awk -v ns="$1" 'BEGIN { if (ns < 1000000) printf "%.1f us", ns / 1000; else printf "%.2f ms", ns / 1000000 }'
}

ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'
}

# SPEC 4 and 8: acquire + release of an uncontended app lock must cost well
# under 1 ms. In process: open, flock, inode re-check, owner record, clear,
# close (what a run pays). The whole-process figures compare cc-ci-run with
# util-linux `flock FILE true` on equal terms (a process start included).
bench_lock() {
	local state="$WORK/lock-state" budget_ns=1000000 n_in=20000 n_proc=300
	local in_ns flock_ns proc_ns
	mkdir -p "$state/locks/apps"
	in_ns=$("$BIN" --state-dir "$state" __bench-lock "$n_in")
	flock_ns=$(median_ns "$n_proc" flock "$state/locks/apps/bench-flock.lock" true)
	proc_ns=$(median_ns "$n_proc" "$BIN" --state-dir "$state" __bench-lock 1)
	echo "lock acquire+release, in process (median of $n_in): $(human_ns "$in_ns") (ratio $(ratio "$in_ns" "$budget_ns") of the 1 ms budget, $(ratio "$in_ns" "$flock_ns") of flock(1) FILE true)"
	echo "lock acquire+release, cc-ci-run process (median of $n_proc): $(human_ns "$proc_ns") (ratio $(ratio "$proc_ns" "$flock_ns") of flock(1) FILE true, $(ratio "$proc_ns" "$budget_ns") of the 1 ms budget)"
	echo "lock baseline flock(1) FILE true, whole process (median of $n_proc): $(human_ns "$flock_ns") (ratio $(ratio "$flock_ns" "$budget_ns") of the 1 ms budget)"
}

main() {
	setup
	bench_lock
}

main "$@"
