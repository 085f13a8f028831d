#!/usr/bin/env bash
# Teardown time of the example recipe on the real swarm (issue 20), with and
# without what the engine can leave behind: a `--quick` run whose extra
# recipe test plants a bridge network and a running and a stopped
# container, all carrying the stack's namespace label (so `docker stack rm`
# fails on the network and never removes the containers). Prints each
# run's teardown time as the run's log reports it ("teardown of D complete
# in T") and the median of each kind. The grace is the default (10 s)
# unless CCCI_GRACE is set. Runs alternate; everything is removed on exit.
# Needs an active swarm and the example images (scripts/build-example-images.sh).
# Usage: scripts/bench-teardown-leftovers.sh [ROUNDS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
[ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = active ] || {
	echo "bench-teardown-leftovers: needs an active swarm" >&2
	exit 2
}
cargo build --quiet
bash scripts/build-example-images.sh >/dev/null
bin=$PWD/target/debug/cc-ci-run
work=$(mktemp -d "${TMPDIR:-/tmp}/ccci-bench-td.XXXXXX")
d="example-td$$.ci.localhost"
stack=${d//./_}
cleanup() {
	docker rm -f "${stack}_left_run" "${stack}_left_stopped" >/dev/null 2>&1 || true
	docker network rm "${stack}_left" >/dev/null 2>&1 || true
	docker stack rm "$stack" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
export PATH="$PWD/tests/fake-swarm:/usr/local/bin:/usr/bin:/bin:$PATH" CCCI_FAKE_BACKEND=swarm
abra_home=$(bash scripts/make-example-recipe.sh "$work/recipe" | tail -n 1)
label="com.docker.stack.namespace=$stack"
mkdir -p "$work/plant/example" "$work/none"
cat >"$work/plant/example/50-plant.sh" <<SH
#!/bin/sh
# tier: install
set -eu
docker network create --label $label ${stack}_left >/dev/null
docker run -d --name ${stack}_left_run --label $label --network ${stack}_left ccci-example:1.0.0 >/dev/null
docker create --name ${stack}_left_stopped --label $label --network ${stack}_left ccci-example:1.0.0 >/dev/null
SH
chmod 755 "$work/plant/example/50-plant.sh"

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# "complete in 6.9s" / "complete in 850ms" -> milliseconds
ms_of() { grep -o 'complete in [0-9.]*[a-z]*' "$1" | tail -n 1 | awk '{ v = $3; if (v ~ /ms$/) { sub(/ms/, "", v); print v } else { sub(/s$/, "", v); print v * 1000 } }'; }

plain=() left=()
for ((i = 0; i < rounds; i++)); do
	for kind in plain left; do
		tests="$work/none"
		[ "$kind" = left ] && tests="$work/plant"
		log="$work/log-$kind-$i"
		code=0
		CCCI_FLOOR=off CCCI_STATE_DIR="$work/state" CCCI_ABRA_HOME="$abra_home" CCCI_FAKE_STATE="$work/fake" \
			CCCI_CI_TESTS="$tests" CCCI_RUN_ID="td-$kind-$i" CCCI_JANITOR=off \
			"$bin" run --recipe example --pr 1 --quick --domain "$d" 2>"$log" || code=$?
		ms=$(ms_of "$log")
		echo "$kind round $i: exit $code, teardown ${ms} ms"
		[ "$code" = 0 ] || { tail -n 20 "$log" >&2; exit 1; }
		if [ "$kind" = plain ]; then plain+=("${ms%.*}"); else left+=("${ms%.*}"); fi
	done
done
echo "teardown median without leftovers: $(printf '%s\n' "${plain[@]}" | median) ms (${plain[*]})"
echo "teardown median with leftovers:    $(printf '%s\n' "${left[@]}" | median) ms (${left[*]})"
