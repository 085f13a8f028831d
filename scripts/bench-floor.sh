#!/usr/bin/env bash
# The engine's own floor for the example recipe's stack on the real swarm
# (SPEC section 8, issue 18), and how close cc-ci-run and a shell script of
# the same abra calls come to it. One `docker events` stream records the
# engine's own timestamps for the whole bench; per round, alternating:
#  - floor: `docker stack deploy` of the example compose with plain docker
#    commands; convergence is `service create` → the task's container
#    `start`; removal is `stack rm` → the stack's last container `destroy`
#    or network `destroy` (whichever is later);
#  - each cc-ci-run binary given (`run --quick` of pull request 1), and the
#    gaps between the engine's event and the line of its log that notices
#    it: the last container `start` before the `converged` line, and the
#    stack's last container/network `destroy` before the `$ abra app rm`
#    line (what a run does right after its teardown wait ends);
#  - the shell script of bench-swarm.sh (abra's habits: 1 s sleeps).
# Prints per-round lines, then medians side by side as ratios: each run
# against the floor plus the tests' own run time (`phase: test-install` to
# `phase: teardown` of that run's log), and against the shell script.
#
# Needs an active swarm and the example images (scripts/build-example-images.sh).
# Usage: scripts/bench-floor.sh [ROUNDS [BIN...]]   (default 3 rounds, the
#        release build of this tree; name several binaries to compare them)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift || true
[ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = active ] || {
	echo "bench-floor: needs an active swarm" >&2
	exit 2
}
bins=()
if [ $# -eq 0 ]; then
	cargo build --release --quiet
	bins=("$PWD/target/release/cc-ci-run")
else
	for b in "$@"; do bins+=("$(realpath "$b")"); done
fi
bash scripts/build-example-images.sh >/dev/null
work=$(mktemp -d "${TMPDIR:-/tmp}/ccci-bench-floor.XXXXXX")
prefix="bfl$$"
events_pid=""
# Only what this bench made (its stacks are named after its pid) is removed.
cleanup() {
	[ -z "$events_pid" ] || kill "$events_pid" 2>/dev/null || true
	for s in $(docker stack ls --format '{{.Name}}' | grep "^$prefix" || true); do
		docker stack rm "$s" >/dev/null 2>&1 || true
	done
	local c n
	c=$(docker ps -aq --filter "name=^$prefix")
	# shellcheck disable=SC2086 # one id a word
	[ -z "$c" ] || docker rm -f $c >/dev/null 2>&1 || true
	for n in network volume secret; do
		for s in $(docker "$n" ls --format '{{.Name}}' | grep "^$prefix" || true); do
			docker "$n" rm "$s" >/dev/null 2>&1 || true
		done
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
export PATH="$PWD/tests/fake-swarm:/usr/local/bin:/usr/bin:/bin:$PATH" CCCI_FAKE_BACKEND=swarm
abra_home=$(bash scripts/make-example-recipe.sh "$work/recipe" | tail -n 1)

now_ms() { local t=$EPOCHREALTIME; echo $((${t/./} / 1000)); }
median() { grep -v NA | sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "NA" }'; }

docker events --format '{{json .}}' --since "$(date +%s)" >"$work/events" &
events_pid=$!
sleep 0.3

# gone STACK: true when nothing of the stack runs any more.
gone() {
	[ -z "$(docker service ls -q --filter "label=com.docker.stack.namespace=$1")$(docker ps -aq --filter "label=com.docker.stack.namespace=$1")$(docker network ls -q --filter "label=com.docker.stack.namespace=$1")" ]
}

# The floor: the example stack with plain docker, timed by the engine.
floor_round() {
	local stack=$1 port=$2 t0
	export STACK_NAME=$stack SECRET_API_KEY_VERSION=v1 APP_PORT=$port DOMAIN=$stack.localhost LETS_ENCRYPT_ENV=
	printf 'bench' | docker secret create "${stack}_api_key_v1" - >/dev/null
	t0=$(now_ms)
	docker stack deploy --resolve-image never -c examples/recipe/compose.yml "$stack" >/dev/null 2>&1
	until grep -q "\"start\".*\"name\":\"${stack}_app\\." "$work/events"; do sleep 0.05; done
	echo "$t0" >"$work/floor-deploy-$stack"
	now_ms >"$work/floor-rm-$stack"
	# stack rm fails when a network is still in use by a task going away,
	# and never retries it (moby/moby#31068): then it is removed here, once
	# the containers are gone, as cc-ci-run's teardown does.
	docker stack rm "$stack" >/dev/null 2>&1 || true
	until gone "$stack"; do
		if [ -z "$(docker ps -aq --filter "label=com.docker.stack.namespace=$stack")" ]; then
			docker network rm "${stack}_default" >/dev/null 2>&1 || true
		fi
		sleep 0.1
	done
	# The volume goes once the container is gone (the engine never removes it).
	until docker volume rm "${stack}_data" >/dev/null 2>&1; do sleep 0.1; done
	docker secret rm "${stack}_api_key_v1" >/dev/null
}

# abra's own calls in a cc-ci-run round, timed from inside the run: a shim
# in front of the stand-in writes each call's start, end and verb.
mkdir -p "$work/shim"
cat >"$work/shim/abra" <<EOF
#!/bin/bash
s=\$EPOCHREALTIME
"$PWD/tests/fake-swarm/abra" "\$@"
rc=\$?
echo "\$s \$EPOCHREALTIME \$1 \$2" >>"\$CCCI_BENCH_ABRA_LOG"
exit \$rc
EOF
chmod +x "$work/shim/abra"

ccci_round() {
	local bin=$1 d=$2 tag=$3
	CCCI_FLOOR=off CCCI_STATE_DIR="$work/state-$tag" CCCI_ABRA_HOME="$abra_home" CCCI_FAKE_STATE="$work/fake-$tag" \
		CCCI_CI_TESTS="$work/none" CCCI_RUN_ID="bfl-$tag" CCCI_JANITOR=off \
		CCCI_ABRA="$work/shim/abra" CCCI_BENCH_ABRA_LOG="$work/abra-$tag" \
		"$bin" run --recipe example --pr 1 --quick --domain "$d" 2>"$work/log-$tag" || {
		tail -n 20 "$work/log-$tag" >&2
		exit 1
	}
}

# shellcheck source=scripts/bench-shell-baseline.sh
. scripts/bench-shell-baseline.sh

mkdir -p "$work/none"
: >"$work/rounds"
for ((i = 0; i < rounds; i++)); do
	s="${prefix}f$i"
	floor_round "$s" $((28100 + i))
	echo "floor $i $s" >>"$work/rounds"
	for ((b = 0; b < ${#bins[@]}; b++)); do
		d="${prefix}b${b}r$i.ci.localhost"
		t0=$(now_ms)
		ccci_round "${bins[$b]}" "$d" "b$b-$i"
		echo "ccci $i ${d//./_} $(($(now_ms) - t0)) $b $t0" >>"$work/rounds"
	done
	d="${prefix}s$i.ci.localhost"
	t0=$(now_ms)
	shell_run "$d" "$i"
	echo "shell $i ${d//./_} $(($(now_ms) - t0))" >>"$work/rounds"
done
sleep 0.5
kill "$events_pid" 2>/dev/null || true
wait "$events_pid" 2>/dev/null || true
events_pid=""

python3 scripts/bench_floor.py "$work" "${bins[@]}"
