#!/usr/bin/env bash
# The convergence wait of the example recipe's install and upgrade tiers on
# the real swarm, for two cc-ci-run binaries side by side (SPEC section 8):
# full runs of pull request 1 (install 1.1.0+1.0, chaos upgrade to the
# 2.0.0-pr image, backup/restore), rounds alternating between the binaries.
#
# The wait of a tier is read from each run's log the same way for both
# binaries: from the `phase: TIER-converge` line to the next `converged`
# line (the log's millisecond timestamps). Binaries that log the engine's
# own update time (`engine update X s`: UpdateStatus StartedAt →
# CompletedAt of the upgraded service) get it reported as well.
#
# Needs an active swarm and the example images (scripts/build-example-images.sh).
# Usage: scripts/bench-converge.sh BEFORE_BIN AFTER_BIN [ROUNDS]   (default 5)
# Prints one line per run, then the medians per binary and tier.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || {
	sed -n '/^# Usage:/,/^# Prints/p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}
before=$(realpath "$1") after=$(realpath "$2") rounds=${3:-5}
[ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = active ] || {
	echo "bench-converge: needs an active swarm" >&2
	exit 2
}
bash scripts/build-example-images.sh >/dev/null
work=$(mktemp -d "${TMPDIR:-/tmp}/ccci-bench-converge.XXXXXX")
# Whatever a run leaves (it should leave nothing) goes with the bench.
cleanup() {
	for s in $(docker stack ls --format '{{.Name}}' | grep '^example-b96' || true); do
		docker stack rm "$s" >/dev/null 2>&1 || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
export PATH="$PWD/tests/fake-swarm:/usr/local/bin:/usr/bin:/bin:$PATH" CCCI_FAKE_BACKEND=swarm
abra_home=$(bash scripts/make-example-recipe.sh "$work/recipe" | tail -n 1)

# tier-wait LOG TIER → milliseconds from `phase: TIER-converge` to `converged`
tier_wait() {
	python3 - "$1" "$2" <<'PY'
import datetime, sys
path, tier = sys.argv[1], sys.argv[2]
start = None
for line in open(path, encoding="utf-8", errors="replace"):
    ts = line.split(" ", 1)[0]
    if "phase: %s-converge" % tier in line:
        start = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
    elif start is not None and " converged" in line:
        end = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
        print(int((end - start).total_seconds() * 1000))
        break
else:
    print("NA")
PY
}

median() { grep -v NA | sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "NA" }'; }

declare -A waits
for ((i = 0; i < rounds; i++)); do
	for which in before after; do
		bin=$before
		[ "$which" = after ] && bin=$after
		d="example-b96${i}$([ "$which" = after ] && echo 1 || echo 0).ci.localhost"
		log="$work/log-$which-$i"
		rc=0
		CCCI_FLOOR=off CCCI_STATE_DIR="$work/state-$which-$i" CCCI_ABRA_HOME="$abra_home" \
			CCCI_FAKE_STATE="$work/fake-$which-$i" CCCI_CI_TESTS="$work/none" \
			CCCI_RUN_ID="bench-$which-$i" CCCI_JANITOR=off \
			"$bin" run --recipe example --pr 1 --domain "$d" 2>"$log" || rc=$?
		install=$(tier_wait "$log" install)
		upgrade=$(tier_wait "$log" upgrade)
		engine=$(grep -o 'engine update [0-9.]* s' "$log" | tail -n 1 | awk '{ print int($3 * 1000) }' || true)
		echo "$which round $i: exit $rc, install wait ${install} ms, upgrade wait ${upgrade} ms${engine:+, engine update $engine ms}"
		waits[$which-install]+="$install "
		waits[$which-upgrade]+="$upgrade "
		if [ -n "$engine" ]; then waits[$which-engine]+="$engine "; fi
	done
done
for which in before after; do
	for k in install upgrade engine; do
		v=${waits[$which-$k]:-}
		[ -n "$v" ] || continue
		# shellcheck disable=SC2086 # $v is a list of numbers, one sample a word
		echo "median $which $k: $(printf '%s\n' $v | median) ms (of: $v)"
	done
done
