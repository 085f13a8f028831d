#!/usr/bin/env bash
# The README's first command: build cc-ci-run and run it on its embedded
# default, a manual run of the bundled example recipe's pull request 1
# against the stand-in abra, docker and engine (no server, no network).
#
# Everything lands under ${CCCI_DEV_DEMO_DIR:-target/demo}: the example recipe's
# repositories, the canonical abra home, the state directory (run record,
# log, reports) and the fake swarm. Extra arguments go to `cc-ci-run run`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
demo="${CCCI_DEV_DEMO_DIR:-$PWD/target/demo}"
rm -rf "$demo"
mkdir -p "$demo/state" "$demo/fake"
abra_home=$(bash scripts/make-example-recipe.sh "$demo/recipe" | tail -n 1)
export CCCI_STATE_DIR="$demo/state"
export CCCI_ABRA_HOME="$abra_home"
export CCCI_FAKE_STATE="$demo/fake"
export CCCI_CI_TESTS="$demo/ci-tests"
# The stand-in swarm's apps serve nothing (no engine, no proxy): the
# floor, which asks each tier's app for CCCI_APP_URL, is off here.
export CCCI_FLOOR="${CCCI_FLOOR:-off}"
export PATH="$PWD/tests/fake:/usr/local/bin:/usr/bin:/bin:$PATH"
# cc-ci-run talks to the engine's API: the stand-in engine answers it from
# the fake swarm, on a socket of its own (it goes when this script does).
tests/fake/engine --socket "$demo/engine.sock" --state "$demo/fake" &
engine=$!
trap 'kill "$engine" 2>/dev/null; wait "$engine" 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S "$demo/engine.sock" ] && break; sleep 0.05; done
export DOCKER_HOST="unix://$demo/engine.sock"
status=0
./target/release/cc-ci-run run --recipe example --pr 1 "$@" || status=$?
echo
./target/release/cc-ci-run status
echo "exit code: $status (state and logs under $demo/state)"
exit "$status"
