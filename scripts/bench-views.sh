#!/usr/bin/env bash
# The operator's views over a large state directory (#17's measure):
# `history --json` and `timeline --out` over N generated run records
# (scripts/bench_records.py: 20 recipes, every other run waiting behind
# the one before it, all within the timeline's default 24 hours), against
# reading the records alone: the same binary's `history` with a domain
# filter that keeps nothing reads and parses every run.json and builds
# nothing (the cost no view can go below).
# Usage: scripts/bench-views.sh [N] [BIN...]   (default 10000, target/release)
# With several BINs each is timed side by side, in turns.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
shift || true
bins=("$@")
if [ ${#bins[@]} -eq 0 ]; then
	cargo build --release --quiet
	bins=("$PWD/target/release/cc-ci-run")
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/ccci-bench-views.XXXXXX")
trap 'rm -rf "$work"' EXIT
state="$work/state"
mkdir -p "$state"
python3 scripts/bench_records.py "$state" "$n" 20

ms() { local t=$EPOCHREALTIME; REPLY=$(( ${t/./} / 1000 )); }
# Median of 5 wall-clock runs of a command, in ms.
median_ms() {
	local s=() i t0
	for ((i = 0; i < 5; i++)); do
		ms; t0=$REPLY
		"$@" >/dev/null
		ms; s+=($((REPLY - t0)))
	done
	printf '%s\n' "${s[@]}" | sort -n | sed -n 3p
}
echo "$n records over 20 domains"
for bin in "${bins[@]}"; do
	base=$(median_ms env CCCI_STATE_DIR="$state" "$bin" history --json --domain none.invalid)
	echo "$bin: reading the records alone $base ms"
	h=$(median_ms env CCCI_STATE_DIR="$state" "$bin" history --json)
	t=$(median_ms env CCCI_STATE_DIR="$state" "$bin" timeline --out "$work/t.html")
	echo "$bin: history --json $h ms ($(awk -v a="$h" -v b="$base" 'BEGIN{printf "%.1f", a/(b?b:1)}')x reading), timeline $t ms ($(awk -v a="$t" -v b="$base" 'BEGIN{printf "%.1f", a/(b?b:1)}')x reading, $(wc -c <"$work/t.html") bytes)"
done
cargo run --release --quiet --example bench_metrics -- 1000 20
