#!/usr/bin/env bash
# Benchmarks on the real swarm (SPEC sections 8 and 10), as ratios:
#  - the wall time of a `--quick` run of the example recipe, against a plain
#    shell script making the same abra calls with abra's habits (a fixed
#    sleep between convergence polls and between teardown polls);
#  - teardown, from `stack rm` to nothing of the stack left: cc-ci-run's
#    backoff wait (read from its log) against a 1 s poll.
# Needs an active swarm and the example images (scripts/build-example-images.sh).
# Usage: scripts/bench-swarm.sh [ROUNDS [BIN]]   (default 3 rounds, rounds
#        alternate; BIN: another cc-ci-run binary than this tree's release build)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
[ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = active ] || {
	echo "bench-swarm: needs an active swarm" >&2
	exit 2
}
if [ -n "${2:-}" ]; then
	bin=$(realpath "$2")
else
	cargo build --release --quiet
	bin=$PWD/target/release/cc-ci-run
fi
bash scripts/build-example-images.sh >/dev/null
work=$(mktemp -d "${TMPDIR:-/tmp}/ccci-bench-swarm.XXXXXX")
trap 'rm -rf "$work"' EXIT
export PATH="$PWD/tests/fake-swarm:/usr/local/bin:/usr/bin:/bin:$PATH" CCCI_FAKE_BACKEND=swarm
abra_home=$(bash scripts/make-example-recipe.sh "$work/recipe" | tail -n 1)

now_ms() { local t=$EPOCHREALTIME; echo $((${t/./} / 1000)); }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# The baseline: what a shell step with abra's habits does for a quick run.
# shellcheck source=scripts/bench-shell-baseline.sh
. scripts/bench-shell-baseline.sh

ccci_run() {
	local d=$1
	CCCI_FLOOR=off CCCI_STATE_DIR="$work/state-$2" CCCI_ABRA_HOME="$abra_home" CCCI_FAKE_STATE="$work/fake-$2" \
		CCCI_CI_TESTS="$work/none" CCCI_RUN_ID="bench-$2" CCCI_JANITOR=off \
		"$bin" run --recipe example --pr 1 --quick --domain "$d" 2>"$work/log-$2"
}

# The baseline teardown: stack rm, then a 1 s poll until nothing is left.
shell_teardown() {
	local d=$1 stack=${1//./_}
	export ABRA_DIR="$abra_home" CCCI_FAKE_STATE="$work/td-fake"
	mkdir -p "$CCCI_FAKE_STATE"
	abra app new example 1.1.0+1.0 -s default -D "$d" -S -n >/dev/null
	abra app deploy "$d" 1.1.0+1.0 -D -c -n >/dev/null
	until [ "$(docker service ls --filter "label=com.docker.stack.namespace=$stack" --format '{{.Replicas}}')" = 1/1 ]; do sleep 0.2; done
	local t0
	t0=$(now_ms)
	abra app undeploy "$d" -n >/dev/null
	while [ -n "$(docker ps -aq --filter "label=com.docker.stack.namespace=$stack")$(docker network ls -q --filter "label=com.docker.stack.namespace=$stack")" ]; do sleep 1; done
	abra app rm "$d" -f -n >/dev/null
	echo $(($(now_ms) - t0))
}

run_ms=() sh_ms=() td_ms=() tdsh_ms=()
for ((i = 0; i < rounds; i++)); do
	d="example-b9${i}1.ci.localhost"
	t0=$(now_ms)
	ccci_run "$d" "$i"
	run_ms+=($(($(now_ms) - t0)))
	# cc-ci-run's teardown, as its log times it (undeploy to nothing left).
	td=$(grep -o 'complete in [0-9.]*[a-z]*' "$work/log-$i" | tail -n 1 | awk '{ v = $3; if (v ~ /ms$/) { sub(/ms/, "", v); print v } else { sub(/s$/, "", v); print v * 1000 } }')
	td_ms+=("${td%.*}")
	t0=$(now_ms)
	shell_run "example-b9${i}2.ci.localhost" "$i"
	sh_ms+=($(($(now_ms) - t0)))
	tdsh_ms+=("$(shell_teardown "example-b9${i}3.ci.localhost")")
done
r=$(printf '%s\n' "${run_ms[@]}" | median)
s=$(printf '%s\n' "${sh_ms[@]}" | median)
t=$(printf '%s\n' "${td_ms[@]}" | median)
ts=$(printf '%s\n' "${tdsh_ms[@]}" | median)
awk -v r="$r" -v s="$s" -v n="$rounds" 'BEGIN { printf "swarm quick run wall time (median of %d): cc-ci-run %.2f s, shell with fixed 1 s sleeps %.2f s (ratio %.3f)\n", n, r / 1000, s / 1000, r / s }'
awk -v r="$t" -v s="$ts" -v n="$rounds" 'BEGIN { printf "swarm teardown, undeploy to nothing left (median of %d): cc-ci-run backoff wait %.2f s, 1 s poll %.2f s (ratio %.3f)\n", n, r / 1000, s / 1000, r / s }'
