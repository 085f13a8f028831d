#!/usr/bin/env bash
# The recipe forms (tests/forms) as full pull-request runs on the real
# swarm, with two cc-ci-run binaries side by side (an older one and this
# one): one row per form and binary with the exit code, the tiers whose
# tests ran, the backup tier's decision and the wall time. Each run gets its
# own state directory, recipe build and domain, with the swarm-backed
# stand-in abra (tests/fake-swarm) and the real docker, as the swarm test
# target runs them; nothing of a run is left on the engine.
#
# Usage: compare-forms.sh OLD_BIN NEW_BIN [FORM...]
# Needs an active one-node swarm and the example images
# (scripts/build-example-images.sh). The `health-proxy` form needs the
# external network `proxy`: it is created (overlay, attachable) when
# missing and removed afterwards if this script created it.
set -euo pipefail

[ $# -ge 2 ] || { sed -n '/^# Usage:/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
old="$(readlink -f "$1")"
new="$(readlink -f "$2")"
shift 2
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
forms=("$@")
[ ${#forms[@]} -gt 0 ] || forms=(overlays quoted-comment merge-key container-label timeout required health-proxy no-backup)
tmp="$(mktemp -d /tmp/ccci-forms.XXXXXX)"
made_proxy=0
cleanup() {
  if [ "$made_proxy" = 1 ]; then docker network rm proxy >/dev/null 2>&1 || true; fi
  case "$tmp" in /tmp/ccci-forms.*) rm -rf "$tmp" ;; esac
}
trap cleanup EXIT
# A stopped comparison stops its run the way Drone's cancel would not: TERM
# to the run, then its teardown waited for, and only then the EXIT trap
# removes the run's directory (its ABRA_DIR and the stand-in's state, which
# the teardown still needs).
child=""
stop() {
  if [ -n "$child" ]; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  exit 143
}
trap stop TERM INT
if ! docker network inspect proxy >/dev/null 2>&1; then
  docker network create --driver overlay --attachable proxy >/dev/null
  made_proxy=1
fi

printf '| form | binary | exit | tiers run | backup tier | convergence bound | time |\n|---|---|---|---|---|---|---|\n'
n=0
for form in "${forms[@]}"; do
  for which in old new; do
    n=$((n + 1))
    bin="$old"; [ "$which" = new ] && bin="$new"
    dir="$tmp/$form-$which"
    mkdir -p "$dir"
    home="$(bash "$repo/scripts/make-example-recipe.sh" --form "$form" "$dir/recipe" | tail -n 1)"
    domain="example-f$$$n.ci.localhost"
    stack="$(printf '%s' "$domain" | tr . _ | cut -c1-45)"
    start=$(date +%s.%N)
    set +e
    env -i PATH="$(dirname "$bin"):$repo/tests/fake-swarm:/usr/local/bin:/usr/bin:/bin" \
      HOME="$dir" CCCI_FLOOR=off CCCI_STATE_DIR="$dir/state" CCCI_ABRA_HOME="$home" \
      CCCI_FAKE_STATE="$dir/fake" CCCI_FAKE_BACKEND=swarm \
      CCCI_EXAMPLE_READY_DIR="$dir/ready" CCCI_CI_TESTS="$dir/ci-tests" \
      CCCI_GRACE=3s CCCI_TEARDOWN_TIMEOUT=90s CCCI_JANITOR=off CCCI_RUN_ID="f$n" \
      "$bin" run --recipe example --pr 1 --domain "$domain" </dev/null >"$dir/out.log" 2>&1 &
    child=$!
    wait "$child"
    code=$?
    child=""
    set -e
    end=$(date +%s.%N)
    rec="$dir/state/runs/f$n/run.json"
    tiers=$(python3 -c 'import json,sys; print(",".join(json.load(open(sys.argv[1])).get("tiers", [])) or "-")' "$rec" 2>/dev/null || echo "-")
    decision=$({ grep -o 'backup/restore tier[^(]*' "$dir/out.log" || true; } | head -n 1 | sed 's/|/\\|/g; s/ *$//')
    [ -n "$decision" ] || decision="(not reached: $({ grep -m1 -o 'error: .*' "$dir/out.log" || true; } | sed 's|/[^ ]*/recipes/example/||' | cut -c1-160 | sed 's/|/\\|/g'))"
    # the bound the run applied: its record's, else its banner's
    bound=$(python3 -c 'import json,sys; b=json.load(open(sys.argv[1])).get("converge_bound"); print("%d s from %s" % (b["seconds"], b["source"]) if b else "")' "$rec" 2>/dev/null || true)
    [ -n "$bound" ] || bound=$({ grep -m1 -o 'convergence bound [0-9][^ ,]*' "$dir/out.log" || true; } | sed 's/convergence bound //')
    printf '| %s | %s | %s | %s | %s | %s | %.1f s |\n' "$form" "$which" "$code" "$tiers" "$decision" "${bound:--}" "$(echo "$end - $start" | bc)"
    # nothing of the run may stay on the shared engine
    docker stack rm "$stack" >/dev/null 2>&1 || true
    for kind in volume secret; do
      docker "$kind" ls --format '{{.Name}}' | grep "^${stack}_" | xargs -r docker "$kind" rm >/dev/null 2>&1 || true
    done
    cp "$dir/out.log" "/tmp/ccci-forms-$form-$which.log"
  done
done
