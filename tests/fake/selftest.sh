#!/usr/bin/env bash
# Self-test of the stand-ins (abra, docker, git) and of the example recipe
# builder: a full new/deploy/upgrade/backup/restore/undeploy/rm cycle, every
# fault knob, the asynchronous linger, and a concurrent stress. Prints one
# line per check and exits 1 if any failed. Every wait is bounded.
# shellcheck disable=SC2015 # `COND && pass ... || fail ...` throughout: pass only
# echoes (status 0), so fail runs exactly when COND fails.
# shellcheck disable=SC2016 # '${VAR...}' in single quotes is compose text,
# for the stand-in abra to expand, not the shell.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
repo="$(cd "$here/../.." && pwd -P)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/ccci-fake-selftest.XXXXXX")"
pids=() # background processes this script started

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

for v in $(env | sed -n 's/^\(CCCI_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
export PATH="$here:$PATH"
export CCCI_FAKE_STATE="$tmp/state"
export HOME="$tmp/home"
mkdir -p "$HOME"

failures=0
pass() { echo "ok    $*"; }
fail() {
  echo "FAIL  $*"
  failures=$((failures + 1))
}
check() { # check DESC COMMAND...: the command succeeds
  local desc="$1"
  shift
  if "$@" >"$tmp/out" 2>"$tmp/err"; then pass "$desc"; else
    fail "$desc"
    sed 's/^/      | /' "$tmp/out" "$tmp/err" | head -20
  fi
}
expect_rc() { # expect_rc WANT DESC COMMAND...: exit status WANT; out/err kept
  local want="$1" desc="$2" rc
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  if [ "$rc" -eq "$want" ]; then pass "$desc"; else
    fail "$desc (exit $rc, want $want)"
    sed 's/^/      | /' "$tmp/out" "$tmp/err" | head -20
  fi
}
has() { grep -q -- "$1" "$2"; } # has PATTERN FILE
wait_for() { # wait_for SECONDS COMMAND...: until the command succeeds
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}
json() { # json EXPR: evaluate EXPR on JSON from stdin (bound to d)
  python3 -c 'import json,sys; d=json.load(sys.stdin); r=eval(sys.argv[1]); print(r if not isinstance(r,bool) else str(r).lower())' "$1"
}
app_field() { # app_field DOMAIN FIELD: from abra app ls -S -m
  abra app ls -S -m | python3 -c '
import json, sys
apps = [a for s in json.load(sys.stdin).values() for a in s["apps"]
        if a["domain"] == sys.argv[1]]
print(apps[0][sys.argv[2]] if apps else "<absent>")' "$1" "$2"
}
stack_filter() { echo "label=com.docker.stack.namespace=$1"; }
count_lines() { "$@" 2>/dev/null | grep -c .; }

echo "== syntax"
for f in "$here/git" "$here/selftest.sh" "$repo/scripts/make-example-recipe.sh" \
  "$repo"/examples/recipe/tests/*.sh; do
  check "bash -n $(basename "$f")" bash -n "$f"
done
for f in "$here/abra" "$here/docker" "$here"/ccci_fake/*.py "$repo/examples/recipe/tests/example_app.py"; do
  check "python3 compiles $(basename "$f")" \
    python3 -c 'import sys; compile(open(sys.argv[1]).read(), sys.argv[1], "exec")' "$f"
done

echo "== make-example-recipe.sh"
mk="$repo/scripts/make-example-recipe.sh"
check "builds the example" "$mk" "$tmp/ex"
last="$(tail -1 "$tmp/out")"
[ "$last" = "$tmp/ex/abra-home" ] && pass "prints DEST/abra-home last" ||
  fail "last line is '$last'"
export ABRA_DIR="$tmp/ex/abra-home"
recipe="$ABRA_DIR/recipes/example"
up="$tmp/ex/upstream.git"
check "builds again elsewhere" "$mk" "$tmp/ex2"
[ "$(git -C "$up" show-ref)" = "$(git -C "$tmp/ex2/upstream.git" show-ref)" ] &&
  pass "deterministic commit and tag ids" || fail "ids differ between builds"
expect_rc 1 "refuses a non-empty DEST" "$mk" "$tmp/ex2"
check "--force rebuilds" "$mk" --force "$tmp/ex2"
check "tag 1.0.0+1.0" git -C "$up" rev-parse -q --verify "refs/tags/1.0.0+1.0"
check "tag 1.1.0+1.0" git -C "$up" rev-parse -q --verify "refs/tags/1.1.0+1.0"
[ "$(git -C "$up" rev-parse 'main')" = "$(git -C "$up" rev-parse '1.1.0+1.0^{commit}')" ] &&
  pass "main is at 1.1.0+1.0" || fail "main is not at 1.1.0+1.0"
expect_rc 1 "refs/pull/1/head is not on main" git -C "$up" merge-base --is-ancestor refs/pull/1/head main
git -C "$up" show refs/pull/1/head:compose.yml | grep -q 'ccci-example:2.0.0-pr' &&
  git -C "$up" cat-file -e refs/pull/1/head:tests/30-pr-image.sh &&
  pass "pull request head has the new image and test" || fail "pull request head content"
[ "$(git -C "$recipe" symbolic-ref --short HEAD)" = main ] &&
  [ "$(git -C "$recipe" config remote.origin.url)" = "$up" ] &&
  [ -d "$ABRA_DIR/servers/default" ] && [ -d "$ABRA_DIR/catalogue" ] &&
  pass "abra-home layout (clone on main, origin upstream.git)" || fail "abra-home layout"
check "--history 3 --blob-mb 1" "$mk" --history 3 --blob-mb 1 "$tmp/ex3"
[ "$(git -C "$tmp/ex3/upstream.git" rev-list --count main)" = 5 ] &&
  pass "history commits come first" || fail "history commit count"
git -C "$tmp/ex3/upstream.git" ls-tree -r --name-only 'main~2' | grep -q '^blobs/' &&
  ! git -C "$tmp/ex3/upstream.git" ls-tree -r --name-only '1.0.0+1.0' | grep -q -e '^blobs/' -e history.txt &&
  pass "blobs in history, not in the release tree" || fail "blob history"
expect_rc 2 "--blob-mb needs --history" "$mk" --blob-mb 1 "$tmp/ex4"

echo "== state directory required"
expect_rc 1 "abra without CCCI_FAKE_STATE" env -u CCCI_FAKE_STATE "$here/abra" app ls -m
has CCCI_FAKE_STATE "$tmp/err" && pass "abra names the variable" || fail "abra message"
expect_rc 1 "docker without CCCI_FAKE_STATE" env -u CCCI_FAKE_STATE "$here/docker" ps
check "abra --version" abra --version
check "abra -v" abra -v
check "docker version" docker version

echo "== app new"
d=t1.example.test
s=t1_example_test
env_file="$ABRA_DIR/servers/default/$d.env"
expect_rc 0 "abra app ls -m with no apps" abra app ls -m
[ "$(cat "$tmp/out")" = "{}" ] && pass "no apps is {}" || fail "no apps: $(cat "$tmp/out")"
expect_rc 1 "app new without -n" abra app new example -s default -D $d -S
expect_rc 1 "app new on a missing server" abra app new example -s nope -D $d -S -n
expect_rc 1 "app new of a missing recipe" abra app new nope -s default -D $d -S -n
expect_rc 1 "app new with an unknown flag" abra app new example -s default -D $d -S -n --bogus
git -C "$recipe" checkout -q main
expect_rc 0 "app new (latest release)" abra app new example -s default -D $d -S -n
has "^TYPE=example:1.1.0+1.0$" "$env_file" && has "^DOMAIN=$d$" "$env_file" &&
  has "^SECRET_API_KEY_VERSION=v1$" "$env_file" &&
  pass "env file has TYPE, DOMAIN and the sample's lines" || fail "env file content"
[ "$(git -C "$recipe" describe --tags --exact-match)" = "1.1.0+1.0" ] &&
  pass "checkout moved to the latest tag" || fail "checkout not at the latest tag"
[ "$(docker secret ls --filter "$(stack_filter $s)" --format '{{.Name}}')" = "${s}_api_key_v1" ] &&
  pass "secret ${s}_api_key_v1 with the stack label" || fail "secret missing"
expect_rc 1 "app new again (env file exists)" abra app new example -s default -D $d -S -n
# A recipe with a long secret name: a 45-character stack name plus
# _a_rather_long_secret_name_v1 is over docker's 64.
git clone -q "$up" "$ABRA_DIR/recipes/longsecret"
echo "SECRET_A_RATHER_LONG_SECRET_NAME_VERSION=v1" >>"$ABRA_DIR/recipes/longsecret/.env.sample"
# abra generates the compose files' secrets (the env file gives versions)
sed -i 's/^secrets:$/secrets:\n  a_rather_long_secret_name:\n    external: true\n    name: ${STACK_NAME}_a_rather_long_secret_name_${SECRET_A_RATHER_LONG_SECRET_NAME_VERSION}/' \
  "$ABRA_DIR/recipes/longsecret/compose.yml"
long="a-very-long-domain-label-for-secrets.example.test"
expect_rc 1 "app new with a secret name over 64 characters" \
  abra app new longsecret -s default -D "$long" -S -C -n
has "64" "$tmp/err" && [ ! -e "$ABRA_DIR/servers/default/$long.env" ] &&
  [ -z "$(docker secret ls -q --filter name=a-very-long)" ] &&
  pass "over-long secret: message names the limit, nothing created" || fail "over-long secret"
expect_rc 0 "app new with secrets of 64 characters at most" \
  abra app new longsecret -s default -D short.example.test -S -C -n
[ "$(count_lines docker secret ls -q --filter name=short_example_test_)" = 2 ] &&
  pass "both secrets made" || fail "secrets of a short domain"
rm -f "$ABRA_DIR/servers/default/short.example.test.env"
rm -rf "$ABRA_DIR/recipes/longsecret"
expect_rc 0 "app new 1.0.0+1.0 -C (no checkout)" abra app new example 1.0.0+1.0 -s default -D t2.example.test -C -n
has "^TYPE=example:1.0.0+1.0$" "$ABRA_DIR/servers/default/t2.example.test.env" &&
  [ "$(git -C "$recipe" describe --tags --exact-match)" = "1.1.0+1.0" ] &&
  pass "-C keeps the checkout, TYPE has the version" || fail "app new -C"
rm -f "$ABRA_DIR/servers/default/t2.example.test.env"
[ "$(app_field $d status)" = unknown ] && pass "ls -S: not deployed is unknown" || fail "ls -S status"
[ "$(abra app ls -m | json 'd["default"]["apps"][0]["status"]')" = "" ] &&
  pass "ls without -S: empty status" || fail "ls without -S"

echo "== app deploy"
# Generous: the checks below run inside this window, each a few stand-in
# calls of ~0.5 s on a loaded 2-core machine (2500 was missed there).
export CCCI_FAKE_ABRA_CONVERGE_MS=6000
expect_rc 0 "deploy" abra app deploy $d 1.1.0+1.0 -n
[ "$(docker service ls --filter "$(stack_filter $s)" --format '{{.Replicas}}')" = "0/1" ] &&
  pass "0/1 replicas right after deploy" || fail "replicas right after deploy"
[ "$(count_lines docker ps -q --filter "$(stack_filter $s)")" = 0 ] &&
  pass "no task container before convergence" || fail "task container too early"
wait_for 10 sh -c "[ \"\$(docker service ls --filter $(stack_filter $s) --format '{{.Replicas}}')\" = 1/1 ]" &&
  pass "1/1 replicas after convergence" || fail "never converged"
sid="$(docker service ls -q --filter "$(stack_filter $s)")"
[ ${#sid} -eq 12 ] && pass "service ls -q prints short ids" || fail "service id '$sid'"
docker service inspect "$sid" >"$tmp/inspect" 2>&1
python3 - "$tmp/inspect" "$s" <<'PY' && pass "inspect: labels, replicas, no UpdateStatus" || fail "inspect content"
import json, sys
d = json.load(open(sys.argv[1]))[0]
s = sys.argv[2]
l = d["Spec"]["Labels"]
assert d["Spec"]["Name"] == s + "_app"
assert l["coop-cloud.%s.version" % s] == "1.1.0+1.0", l
assert l["coop-cloud.%s.chaos" % s] == "false"
assert l["coop-cloud.%s.recipe" % s] == "example"
assert "coop-cloud.%s.chaos-version" % s not in l
assert l["backupbot.backup"] == "true"
assert l["com.docker.stack.namespace"] == s
assert d["Spec"]["Mode"]["Replicated"]["Replicas"] == 1
assert d["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "ccci-example:1.1.0"
assert "UpdateStatus" not in d
PY
[ "$(docker service inspect --format '{{json .}}' "${s}_app" | json 'd["ID"]' | cut -c1-12)" = "$sid" ] &&
  pass "inspect by name, --format '{{json .}}'" || fail "inspect by name"
expect_rc 1 "inspect of an unknown service" docker service inspect nosuchservice
expect_rc 1 "deploy again without -f" abra app deploy $d -n
has "$d is already deployed" "$tmp/err" && pass "says already deployed" || fail "already-deployed message"
[ "$(app_field $d status)/$(app_field $d version)/$(app_field $d chaos)" = "deployed/1.1.0+1.0/false" ] &&
  pass "ls -S: deployed 1.1.0+1.0, chaos false" || fail "ls -S after deploy"
[ "$(docker volume ls -q --filter "$(stack_filter $s)")" = "${s}_data" ] && pass "volume ${s}_data" || fail "volume"
[ "$(docker network ls --filter "$(stack_filter $s)" --format '{{.Name}}')" = "${s}_default" ] &&
  pass "network ${s}_default" || fail "network"
[ "$(count_lines docker ps -aq --filter "$(stack_filter $s)")" = 1 ] && pass "one task container" || fail "task containers"
[ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = active ] && pass "docker info: swarm active" || fail "docker info"

echo "== chaos deploy (upgrade)"
head8="$(git -C "$recipe" rev-parse HEAD | cut -c1-8)"
echo untracked >"$recipe/scratch"
expect_rc 0 "deploy -C -f on a dirty tree" abra app deploy $d -C -f -n
[ "$(docker service inspect --format "{{index .Spec.Labels \"coop-cloud.$s.chaos-version\"}}" "${s}_app")" = "$head8+U" ] &&
  pass "chaos-version is HEAD[:8]+U when dirty" || fail "dirty chaos-version"
expect_rc 1 "non-chaos deploy -f refuses a dirty checkout" abra app deploy $d -f -n
rm -f "$recipe/scratch"
git -C "$recipe" checkout -q refs/pull/1/head 2>/dev/null ||
  { git -C "$recipe" fetch -q origin refs/pull/1/head && git -C "$recipe" checkout -q FETCH_HEAD; }
pr8="$(git -C "$recipe" rev-parse HEAD | cut -c1-8)"
[ "$(docker service inspect "${s}_app" | json '"UpdateStatus" in d[0]')" = false ] &&
  pass "a label-only redeploy has no UpdateStatus" || fail "UpdateStatus after a label-only redeploy"
running_images() {
  docker service ps -q --no-trunc "${s}_app" | xargs docker inspect --type task \
    --format '{{.Status.State}} {{.Spec.ContainerSpec.Image}}' | sed -n 's/^running //p'
}
[ "$(running_images)" = ccci-example:1.1.0 ] && pass "service ps + inspect --type task: one running task" ||
  fail "task view before the upgrade: $(running_images)"
expect_rc 0 "deploy -C of the pull request head" abra app deploy $d -C -n
# The old task serves on while the update has not started (UpdateStatus
# null) and while it is `updating`; then the new one runs and it completes.
[ "$(running_images)" = ccci-example:1.1.0 ] &&
  [ "$(docker service ls --filter "$(stack_filter $s)" --format '{{.Replicas}}')" = 1/1 ] &&
  pass "right after the upgrade the old task still runs (1/1)" || fail "old task right after the upgrade"
wait_for 10 sh -c "[ \"\$(docker service inspect --format '{{.UpdateStatus.State}}' ${s}_app)\" = updating ]" &&
  pass "UpdateStatus updating while converging" || fail "UpdateStatus during update"
wait_for 10 sh -c "[ \"\$(docker service inspect --format '{{.UpdateStatus.State}}' ${s}_app)\" = completed ]" &&
  pass "UpdateStatus completed" || fail "UpdateStatus never completed"
[ "$(running_images)" = ccci-example:2.0.0-pr ] && pass "then only the new task runs" ||
  fail "task view after the upgrade: $(running_images)"
[ "$(docker service inspect --format '{{.Spec.TaskTemplate.ContainerSpec.StopGracePeriod}}' "${s}_app")" = 10000000000 ] &&
  [ "$(docker service ps -q --no-trunc "${s}_app" | head -1 | xargs docker inspect --type task --format '{{json .Spec.ContainerSpec.StopGracePeriod}}' 2>&1)" != 10000000000 ] &&
  pass "service inspect fills in the daemon's defaults, the task spec has none" || fail "inserted defaults"
expect_rc 1 "inspect --type task of a missing task" docker inspect --type task nosuchtask
[ "$(app_field $d chaos)/$(app_field $d chaosVersion)" = "true/$pr8" ] &&
  pass "ls -S: chaos true, chaosVersion $pr8" || fail "ls -S chaos fields"
[ "$(docker service inspect --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}' "${s}_app")" = ccci-example:2.0.0-pr ] &&
  pass "chaos deploy reads the working tree's compose file" || fail "chaos image"
[ "$(docker service ls -q --filter "$(stack_filter $s)")" = "$sid" ] &&
  pass "service id kept across redeploys" || fail "service id changed"

echo "== example recipe tests"
tenv=(env CCCI_APP_DOMAIN="$d" CCCI_STACK="$s" CCCI_RECIPE=example CCCI_SERVER=default)
expect_rc 0 "00-deployed.sh (install)" "${tenv[@]}" CCCI_TIER=install "$recipe/tests/00-deployed.sh"
has "no HTTP checks: the app lives in the file-backed fake swarm" "$tmp/out" &&
  pass "file backend: the example tests make no HTTP requests" || { fail "example tests' mode"; cat "$tmp/out" "$tmp/err"; }
expect_rc 0 "10-upgraded.sh (upgrade)" "${tenv[@]}" CCCI_TIER=upgrade "$recipe/tests/10-upgraded.sh"
expect_rc 0 "30-pr-image.sh (upgrade)" "${tenv[@]}" CCCI_TIER=upgrade "$recipe/tests/30-pr-image.sh"
expect_rc 1 "CCCI_EXAMPLE_FAIL=upgrade fails 10-upgraded.sh" \
  "${tenv[@]}" CCCI_TIER=upgrade CCCI_EXAMPLE_FAIL=upgrade "$recipe/tests/10-upgraded.sh"
expect_rc 0 "CCCI_EXAMPLE_FAIL=upgrade spares the install tier" \
  "${tenv[@]}" CCCI_TIER=install CCCI_EXAMPLE_FAIL=upgrade "$recipe/tests/00-deployed.sh"
expect_rc 1 "CCCI_EXAMPLE_FAIL=all fails 00-deployed.sh" \
  "${tenv[@]}" CCCI_TIER=install CCCI_EXAMPLE_FAIL=all "$recipe/tests/00-deployed.sh"
mkdir -p "$tmp/ready"
"${tenv[@]}" CCCI_TIER=install CCCI_EXAMPLE_HANG=install CCCI_EXAMPLE_READY_DIR="$tmp/ready" \
  "$recipe/tests/00-deployed.sh" &
p=$!
pids+=("$p")
if wait_for 10 test -e "$tmp/ready/test-install"; then
  pass "CCCI_EXAMPLE_HANG touches the ready file"
  kill -TERM "$p"
  wait "$p"
  rc=$?
  [ $rc -eq 143 ] && pass "hanging test dies on SIGTERM" || fail "hanging test exit $rc"
else fail "no ready file"; fi
git -C "$recipe" checkout -q '1.1.0+1.0'
expect_rc 0 "plain deploy -f back to 1.1.0+1.0" abra app deploy $d -f -n
expect_rc 1 "10-upgraded.sh fails on a non-chaos app" "${tenv[@]}" CCCI_TIER=upgrade "$recipe/tests/10-upgraded.sh"

echo "== backup and restore"
data="$CCCI_FAKE_STATE/volumes/${s}_data/_data"
echo before >"$data/file"
expect_rc 0 "backup create" abra app backup create $d -n
echo after >"$data/file"
expect_rc 0 "restore" abra app restore $d -n
[ "$(cat "$data/file")" = before ] && pass "restore brings the data back" || fail "restore content"
expect_rc 0 "20-restored.sh (restore)" "${tenv[@]}" CCCI_TIER=restore "$recipe/tests/20-restored.sh"
[ "$(cat "$CCCI_FAKE_STATE/backups/$d/data/file" 2>/dev/null)" = before ] &&
  pass "the backup keeps backupbot.backup.path=/data of volume data as backups/DOMAIN/data/" ||
  fail "backup layout: $(ls -R "$CCCI_FAKE_STATE/backups/$d" 2>&1)"
echo changed >"$data/file"
expect_rc 0 "restore with CCCI_FAKE_ABRA_NOOP=restore" env CCCI_FAKE_ABRA_NOOP="restore@$d" abra app restore $d -n
[ "$(cat "$data/file")" = changed ] && pass "a noop restore copies nothing" || fail "noop restore content"
expect_rc 0 "backup create with CCCI_FAKE_ABRA_NOOP=backup" env CCCI_FAKE_ABRA_NOOP=backup abra app backup create $d -n
[ -d "$CCCI_FAKE_STATE/backups/$d" ] && [ -z "$(ls -A "$CCCI_FAKE_STATE/backups/$d")" ] &&
  pass "a noop backup keeps an empty backup" || fail "noop backup: $(ls -A "$CCCI_FAKE_STATE/backups/$d")"
expect_rc 0 "backup create" abra app backup create $d -n
expect_rc 0 "restore" abra app restore $d -n

echo "== undeploy, linger, rm"
export CCCI_FAKE_ABRA_LINGER_MS=4000 # generous: checks run inside this window
expect_rc 0 "undeploy returns at once" abra app undeploy $d -n
[ "$(count_lines docker service ls -q --filter "$(stack_filter $s)")" = 0 ] &&
  pass "services gone at once" || fail "services still there"
[ "$(count_lines docker ps -aq --filter "$(stack_filter $s)")" = 1 ] &&
  pass "containers linger" || fail "no lingering container"
[ "$(count_lines docker network ls -q --filter "$(stack_filter $s)")" = 1 ] &&
  pass "network lingers" || fail "no lingering network"
[ "$(app_field $d status)" = unknown ] && pass "ls -S: unknown after undeploy" || fail "status after undeploy"
expect_rc 1 "rm while containers linger" abra app rm $d -f -n
has "Error response from daemon: remove ${s}_data: volume is in use - \[" "$tmp/err" &&
  pass "says volume is in use" || fail "volume-in-use message"
expect_rc 1 "undeploy of an undeployed app" abra app undeploy $d -n
has "$d is not deployed" "$tmp/err" && pass "says not deployed" || fail "not-deployed message"
wait_for 10 sh -c "[ -z \"\$(docker ps -aq --filter $(stack_filter $s))\" ]" &&
  pass "containers gone after the linger" || fail "containers never went"
[ "$(count_lines docker network ls -q --filter "$(stack_filter $s)")" = 0 ] &&
  pass "network gone after the linger" || fail "network still there"
expect_rc 0 "rm" abra app rm $d -f -n
[ ! -e "$env_file" ] && [ -z "$(docker volume ls -q --filter "name=$s")" ] &&
  [ -z "$(docker secret ls -q --filter "name=$s")" ] && [ ! -e "$CCCI_FAKE_STATE/stacks/$s.json" ] &&
  pass "rm removed env file, volumes, secrets, stack" || fail "rm left something"
expect_rc 1 "rm again" abra app rm $d -f -n
has "app $d does not exist" "$tmp/err" && pass "says does not exist" || fail "does-not-exist message"
expect_rc 1 "deploy of a missing app" abra app deploy $d -n

echo "== rm of a deployed app"
abra app new example -s default -D $d -S -n >/dev/null
abra app deploy $d -n >/dev/null
expect_rc 1 "rm while deployed" abra app rm $d -f -n
has "still deployed" "$tmp/err" && [ -e "$env_file" ] && pass "says still deployed, keeps the app" ||
  fail "still-deployed"

echo "== fault knobs"
expect_rc 1 "FAIL=undeploy" env CCCI_FAKE_ABRA_FAIL=undeploy abra app undeploy $d -n
[ "$(app_field $d status)" = deployed ] && pass "failed undeploy changed nothing" || fail "state after FAIL"
expect_rc 0 "FAIL=undeploy@other spares this app" env CCCI_FAKE_ABRA_FAIL=ls,undeploy@other.example.test abra app undeploy $d -n
expect_rc 1 "FAIL=ls" env CCCI_FAKE_ABRA_FAIL=ls abra app ls -m
CCCI_FAKE_ABRA_HANG=deploy@$d abra app deploy $d -f -n >/dev/null 2>&1 &
p=$!
pids+=("$p")
if wait_for 10 test -e "$CCCI_FAKE_STATE/hang/deploy.$p"; then
  pass "HANG=deploy@domain writes hang/deploy.<pid>"
  [ "$(app_field $d status)" = unknown ] && pass "hanging deploy changed nothing" || fail "state while hanging"
  kill -TERM "$p"
  wait "$p"
  rc=$?
  [ $rc -eq 143 ] && pass "hanging abra dies on SIGTERM" || fail "hanging abra exit $rc"
else fail "no hang marker for deploy"; fi
CCCI_FAKE_ABRA_HANG="ls" abra app ls -m >/dev/null 2>&1 &
p=$!
pids+=("$p")
if wait_for 10 test -e "$CCCI_FAKE_STATE/hang/ls.$p"; then
  kill -KILL "$p"
  { wait "$p"; } 2>/dev/null # no "Killed" job message
  rc=$?
  [ $rc -eq 137 ] && pass "hanging ls dies on SIGKILL" || fail "hanging ls exit $rc"
else fail "no hang marker for ls"; fi
expect_rc 1 "FAIL=new" env CCCI_FAKE_ABRA_FAIL=new abra app new example -s default -D t3.example.test -S -n
[ ! -e "$ABRA_DIR/servers/default/t3.example.test.env" ] && pass "failed new created nothing" || fail "FAIL=new"
expect_rc 0 "recipe fetch" abra recipe fetch example -n
expect_rc 1 "recipe fetch of a missing recipe" abra recipe fetch nope -n
expect_rc 1 "FAIL=fetch" env CCCI_FAKE_ABRA_FAIL=fetch abra recipe fetch example -n
expect_rc 0 "FAIL=fetch@other spares example" env CCCI_FAKE_ABRA_FAIL=fetch@other abra recipe fetch example -n
expect_rc 1 "image not present" docker image inspect ccci-example:1.1.0
expect_rc 1 "FAIL=pull" env CCCI_FAKE_ABRA_FAIL=pull docker pull ccci-example:1.1.0
expect_rc 0 "pull" docker pull ccci-example:1.1.0
expect_rc 0 "image present after pull" docker image inspect ccci-example:1.1.0
CCCI_FAKE_ABRA_HANG=pull docker pull ccci-example:1.0.0 >/dev/null 2>&1 &
p=$!
pids+=("$p")
if wait_for 10 test -e "$CCCI_FAKE_STATE/hang/pull.$p"; then
  kill -TERM "$p"
  wait "$p"
  [ $? -eq 143 ] && pass "HANG=pull hangs until SIGTERM" || fail "hanging pull exit"
else fail "no hang marker for pull"; fi
expect_rc 1 "docker image inspect after a hung pull" docker image inspect ccci-example:1.0.0

echo "== crash loop"
c=t4.example.test
abra app new example -s default -D $c -S -n >/dev/null
expect_rc 0 "deploy a crash-looping app" env CCCI_FAKE_ABRA_CRASHLOOP=$c CCCI_FAKE_ABRA_CONVERGE_MS=0 abra app deploy $c -n
sleep 0.2
[ "$(docker service ls --filter "$(stack_filter t4_example_test)" --format '{{.Replicas}}')" = 0/1 ] &&
  pass "crash loop: never a running replica" || fail "crash loop replicas"
[ "$(docker ps -a --filter "$(stack_filter t4_example_test)" --format '{{.State}}')" = exited ] &&
  pass "crash loop: an exited task container" || fail "crash loop container"

echo "== undeploy leaves a network and a container (CCCI_FAKE_UNDEPLOY_LEAVES)"
l=t5.example.test
ls_=t5_example_test
abra app new example -s default -D $l -S -n >/dev/null
abra app deploy $l -n >/dev/null
expect_rc 1 "undeploy that leaves the network fails as docker stack rm does" \
  env CCCI_FAKE_UNDEPLOY_LEAVES=network,container@$l CCCI_FAKE_ABRA_LINGER_MS=0 abra app undeploy $l -n
has "is in use by task" "$tmp/err" && has "failed to remove some resources from stack: $ls_" "$tmp/err" &&
  pass "names the network in use and the stack" || fail "undeploy-leaves message"
[ "$(count_lines docker service ls -q --filter "$(stack_filter $ls_)")" = 0 ] &&
  pass "services gone anyway" || fail "services still there"
lc="$(docker ps -aq --no-trunc --filter "$(stack_filter $ls_)")"
ln="$(docker network ls -q --no-trunc --filter "$(stack_filter $ls_)")"
[ -n "$lc" ] && [ -n "$ln" ] && pass "container and network left after the linger" || fail "nothing left"
[ "$(docker container inspect --format '{{index .Config.Labels "com.docker.stack.namespace"}} {{.State.Status}}' "$lc")" = "$ls_ running" ] &&
  pass "container inspect: label and state" || fail "container inspect"
[ "$(docker network inspect --format '{{.Name}}' "$ln")" = "${ls_}_default" ] &&
  pass "network inspect: name" || fail "network inspect"
expect_rc 1 "container inspect of a missing id" docker container inspect nosuchcontainer
has "No such container: nosuchcontainer" "$tmp/err" && [ "$(cat "$tmp/out")" = "[]" ] &&
  pass "prints [] and names it" || fail "container inspect missing"
expect_rc 1 "app rm while the left container mounts the volume" abra app rm $l -f -n
has "volume is in use" "$tmp/err" && pass "says volume is in use" || fail "volume-in-use (left container)"
expect_rc 1 "network rm while the container is attached" docker network rm "$ln"
has "is in use by task" "$tmp/err" && has "exit status 1" "$tmp/err" && pass "says in use by task" || fail "network in use"
expect_rc 0 "rm -f of the left container" docker rm -f "$lc"
expect_rc 1 "network rm refused once more (CCCI_FAKE_DOCKER_NETWORK_IN_USE=1)" \
  env CCCI_FAKE_DOCKER_NETWORK_IN_USE=1 docker network rm "$ln"
expect_rc 0 "network rm" env CCCI_FAKE_DOCKER_NETWORK_IN_USE=1 docker network rm "$ln"
expect_rc 1 "network rm of a missing network" docker network rm "$ln"
has "network $ln not found" "$tmp/err" && pass "says not found" || fail "network not found"
expect_rc 0 "app rm once nothing is left" abra app rm $l -f -n
[ -z "$(docker network ls -q --filter "$(stack_filter $ls_)")" ] && [ -z "$(docker ps -aq --filter "$(stack_filter $ls_)")" ] &&
  pass "nothing of the stack left" || fail "left after rm"

echo "== git wrapper"
check "passes through (git --version)" git --version
[ "$(type -P git)" = "$here/git" ] && pass "wrapper is first on PATH" || fail "wrapper not first on PATH"
expect_rc 0 "git fetch passes through" git -C "$recipe" fetch -q origin refs/pull/1/head
expect_rc 128 "CCCI_FAKE_GIT_FAIL=fetch" env CCCI_FAKE_GIT_FAIL=fetch git -C "$recipe" fetch -q origin
expect_rc 0 "CCCI_FAKE_GIT_FAIL=fetch spares other commands" env CCCI_FAKE_GIT_FAIL=fetch git -C "$recipe" rev-parse HEAD
CCCI_FAKE_GIT_HANG=fetch git -C "$recipe" fetch -q origin >/dev/null 2>&1 &
p=$!
pids+=("$p")
if wait_for 10 test -e "$CCCI_FAKE_STATE/hang/git-fetch.$p"; then
  pass "CCCI_FAKE_GIT_HANG=fetch writes hang/git-fetch.<pid>"
  kill -TERM "$p"
  wait "$p"
  rc=$?
  [ $rc -eq 143 ] && pass "hanging git fetch dies on SIGTERM" || fail "hanging git exit $rc"
else fail "no git hang marker"; fi
(
  unset CCCI_FAKE_STATE
  CCCI_FAKE_GIT_HANG=fetch exec git fetch
) >/dev/null 2>&1 &
p=$!
pids+=("$p")
sleep 0.3
if kill -0 "$p" 2>/dev/null; then
  kill -TERM "$p"
  wait "$p"
  pass "git hang without CCCI_FAKE_STATE just sleeps"
else fail "git hang without state exited"; fi

echo "== docker containers"
cid="$(docker run -d --rm --label ccci.test=run1 --name t-one busybox sleep 1000)"
[[ "$cid" =~ ^[0-9a-f]{64}$ ]] && pass "docker run prints a 64-hex id" || fail "run id '$cid'"
docker run -d --label ccci.test=run1 busybox true >/dev/null
docker run -d --label ccci.test=run2 busybox true >/dev/null
[ "$(count_lines docker ps -aq --filter label=ccci.test=run1)" = 2 ] && pass "ps filters by label" || fail "ps label filter"
[ "$(count_lines docker ps -aq --filter label=ccci.test)" = 3 ] && pass "ps filters by label key" || fail "ps label key"
expect_rc 125 "run with a name in use" docker run -d --name t-one busybox
# docker 20.10: with -f a missing container is named on stderr, not an error
expect_rc 0 "rm -f with one missing id" docker rm -f "${cid:0:12}" nosuchcontainer
has "No such container: nosuchcontainer" "$tmp/err" && ! docker ps -aq --no-trunc | grep -q "$cid" &&
  pass "rm -f removed the existing one, named the missing one" || fail "rm -f"
expect_rc 0 "rm -f of a missing id" docker rm -f nosuchcontainer
expect_rc 1 "rm of a missing id" docker rm nosuchcontainer
ids="$(docker ps -aq --filter label=ccci.test)"
# shellcheck disable=SC2086 # one argument per id
expect_rc 0 "rm -f by short ids" docker rm -f $ids
[ "$(count_lines docker ps -aq --filter label=ccci.test)" = 0 ] && pass "no test container left" || fail "containers left"
expect_rc 1 "unsupported docker command" docker stack ls
expect_rc 1 "unsupported abra command" abra app frobnicate x
expect_rc 1 "unsupported docker format" docker ps --format '{{range .}}x{{end}}'

echo "== concurrent cycles"
t0=$SECONDS
export CCCI_FAKE_ABRA_CONVERGE_MS=50 CCCI_FAKE_ABRA_LINGER_MS=200
worker() { # one run: own ABRA_DIR like cc-ci-run's run tree, shared servers
  local i="$1" dom="c$1.example.test" dir="$tmp/runs/$1"
  mkdir -p "$dir/recipes"
  ln -s "$tmp/ex/abra-home/servers" "$dir/servers"
  git clone -q --shared "$up" "$dir/recipes/example" || return 1
  export ABRA_DIR="$dir" CCCI_RUN_ID="run-$i"
  abra app new example -s default -D "$dom" -S -n >/dev/null || return 2
  abra app deploy "$dom" -n >/dev/null || return 3
  abra app deploy "$dom" -C -f -n >/dev/null || return 4
  abra app undeploy "$dom" -n >/dev/null || return 5
  for _ in $(seq 1 100); do # rm fails while the containers linger
    abra app rm "$dom" -f -n >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 6
}
wpids=()
for i in $(seq 1 16); do
  worker "$i" &
  wpids+=("$!")
  pids+=("$!")
done
bad=0
for p in "${wpids[@]}"; do wait "$p" || bad=$((bad + 1)); done
[ $bad -eq 0 ] && pass "16 concurrent new/deploy/redeploy/undeploy/rm cycles ($((SECONDS - t0))s)" ||
  fail "$bad workers failed"
# shellcheck disable=SC2010 # the names are the ones this test made (no odd characters)
left="$(ls "$CCCI_FAKE_STATE/stacks" | grep -c '^c[0-9]*_example_test' || true)"
vols="$(docker volume ls -q --filter name=c | grep -c '^c[0-9]*_example_test' || true)"
secs="$(docker secret ls --format '{{.Name}}' | grep -c '^c[0-9]*_example_test' || true)"
[ "$left$vols$secs" = 000 ] && pass "nothing of the concurrent apps left" || fail "left: stacks $left volumes $vols secrets $secs"
rpids=()
for i in $(seq 1 8); do
  docker run -d --name same-name busybox >/dev/null 2>&1 &
  rpids+=("$!")
  pids+=("$!")
done
won=0
for p in "${rpids[@]}"; do wait "$p" && won=$((won + 1)); done
[ $won -eq 1 ] && pass "one of 8 concurrent runs with one name wins" || fail "$won runs won the name"

echo "== recipes as abra reads them (anchors, merge keys, abra.sh, required variables, secrets)"
# A recipe of the shapes public Co-op Cloud recipes have, written here:
# labels through YAML anchors and merge keys, a config versioned in abra.sh
# with template_driver: golang, versioned secrets with modifiers, a required
# variable. Deployed with -C (its working tree) like a recipe under test.
fr="$ABRA_DIR/recipes/forms"
mkdir -p "$fr"
cat >"$fr/compose.yml" <<'EOF'
version: "3.8"
x-backup: &backup
  backupbot.backup: "${ENABLE_BACKUPS:-true}"
  backupbot.backup.path: /data
x-traefik: &traefik
  traefik.enable: "true"
  nginx.conf-version: ${NGINX_CONF_VERSION}
x-owned: &owned {owner: forms, traefik.enable: "false"}
services:
  app:
    image: nginx:1.27
    environment: &env
      - DOMAIN
    secrets: [db_password, smtp_password]
    configs:
      - source: nginx_conf
        target: /etc/nginx/nginx.conf
    deploy:
      labels:
        <<: [*traefik, *owned]
        owner: app
  db:
    image: postgres:16
    environment: *env
    deploy:
      labels: {<<: *backup, backupbot.backup.pre-hook: "pg_dump"}
secrets:
  db_password:
    external: true
    name: ${STACK_NAME}_db_password_${SECRET_DB_PASSWORD_VERSION}
  smtp_password:
    external: true
    name: ${STACK_NAME}_smtp_password_${SECRET_SMTP_PASSWORD_VERSION}
configs:
  nginx_conf:
    name: ${STACK_NAME}_nginx_conf_${NGINX_CONF_VERSION}
    file: nginx.conf.tmpl
    template_driver: golang
volumes:
  data:
EOF
cat >"$fr/.env.sample" <<'EOF'
TYPE=forms
DOMAIN=forms.example.com
## the compose files' secrets: versions, and abra's modifiers after them
SECRET_DB_PASSWORD_VERSION=v1  # length=48
SECRET_SMTP_PASSWORD_VERSION=v1 # generate=false
## a version line of a secret no compose file declares: abra ignores it
SECRET_UNUSED_VERSION=v1
EOF
cat >"$fr/abra.sh" <<'EOF'
# config versions, as recipes keep them
export NGINX_CONF_VERSION=v2

run_cron () {
  export NOT_A_VERSION=1
}
EOF
echo 'server_name {{ env "DOMAIN" }};' >"$fr/nginx.conf.tmpl"
git -C "$fr" init -q && git -C "$fr" add -A &&
  git -C "$fr" -c user.email=t@t -c user.name=t commit -qm forms
f=f1.example.test
fs=f1_example_test
expect_rc 0 "app new -S of a recipe with versioned secrets" abra app new forms -s default -D $f -S -C -n
python3 - "$tmp/out" <<'PY' && pass "app new -S prints a NAME/VALUE table of the generated secrets" || fail "secrets table"
import re, sys
rows = [re.findall(r"│ *(\S+) *", l) for l in open(sys.argv[1], encoding="utf-8") if l.startswith("│")]
assert rows[0] == ["NAME", "VALUE"], rows
assert [r[0] for r in rows[1:]] == ["db_password"], rows
assert re.fullmatch(r"[A-Za-z0-9]{48}", rows[1][1]), rows
PY
has "not shown again" "$tmp/err" && pass "warns that the values are not shown again" || fail "no warning"
value="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["data"])' \
  "$CCCI_FAKE_STATE/secrets/${fs}_db_password_v1.json" 2>/dev/null)"
grep -q "│ db_password *│ $value *│" "$tmp/out" && [ ${#value} = 48 ] &&
  pass "the secret holds the printed value (# length=48 honoured)" || fail "secret value '$value'"
[ "$(docker secret ls --format '{{.Name}}' --filter "name=${fs}_" | sort | tr '\n' ' ')" = "${fs}_db_password_v1 " ] &&
  pass "only the compose files' secrets, not # generate=false, not an undeclared version" ||
  fail "secrets made: $(docker secret ls --format '{{.Name}}' --filter "name=${fs}_")"
expect_rc 1 "deploy without the # generate=false secret" abra app deploy $f -C -n
has "secret not inserted (#generate=false): smtp_password" "$tmp/err" &&
  [ ! -e "$CCCI_FAKE_STATE/stacks/$fs.json" ] &&
  pass "refused as abra refuses it, nothing deployed" || fail "missing secret"
# the operator inserts it by hand (abra app secret insert): a record in the
# fake swarm's store
python3 - "$CCCI_FAKE_STATE/secrets/${fs}_smtp_password_v1.json" "${fs}_smtp_password_v1" <<'PY'
import json, sys
json.dump({"id": "x" * 25, "name": sys.argv[2], "labels": {}, "created": 0, "data": "by hand"},
          open(sys.argv[1], "w"))
PY
expect_rc 0 "deploy (-C, -o) once every secret exists" abra app deploy $f -C -o -n
docker service inspect "${fs}_app" "${fs}_db" >"$tmp/inspect" 2>&1
python3 - "$tmp/inspect" "$fs" <<'PY' && pass "merge keys: <<: *x, <<: [*a, *b], {<<: *x, ...}" || fail "merged labels"
import json, sys
app, db = (d["Spec"]["Labels"] for d in json.load(open(sys.argv[1])))
s = sys.argv[2]
assert app["traefik.enable"] == "true", app      # the first of the list wins
assert app["owner"] == "app", app                # the mapping's own key wins
assert db["backupbot.backup"] == "true" and db["backupbot.backup.path"] == "/data", db
assert db["backupbot.backup.pre-hook"] == "pg_dump", db
PY
python3 - "$tmp/inspect" "$fs" "$CCCI_FAKE_STATE/stacks/$fs.json" <<'PY' && pass "abra.sh exports: the golang config's version v2" || fail "abra.sh export"
import json, sys
app = json.load(open(sys.argv[1]))[0]["Spec"]["Labels"]
s = sys.argv[2]
assert app["nginx.conf-version"] == "v2", app
assert json.load(open(sys.argv[3]))["configs"] == {"nginx_conf": s + "_nginx_conf_v2"}
PY
abra app undeploy $f -n >/dev/null
# ${VAR:?msg} and ${VAR?msg}: docker's loader refuses the file, abra exits 1
# before anything is deployed
sed -i 's/^    image: nginx:1.27$/    image: nginx:${NGINX_TAG:?set NGINX_TAG in the env file}/' "$fr/compose.yml"
wait_for 10 sh -c "[ -z \"\$(docker ps -aq --filter $(stack_filter $fs))\" ]" || fail "$fs lingers"
expect_rc 1 'deploy refuses ${NGINX_TAG:?msg} unset' abra app deploy $f -C -n
has "required variable NGINX_TAG is missing a value: set NGINX_TAG in the env file" "$tmp/err" &&
  [ "$(count_lines docker service ls -q --filter "$(stack_filter $fs)")" = 0 ] && pass "names the variable, nothing deployed" || fail ":? message"
echo "NGINX_TAG=" >>"$ABRA_DIR/servers/default/$f.env"
expect_rc 1 'deploy refuses ${NGINX_TAG:?msg} empty' abra app deploy $f -C -n
sed -i 's/NGINX_TAG:?/NGINX_TAG?/' "$fr/compose.yml"
expect_rc 0 'deploy takes ${NGINX_TAG?msg} set but empty' abra app deploy $f -C -f -n
sed -i '/^NGINX_TAG=$/d' "$ABRA_DIR/servers/default/$f.env"
expect_rc 1 'deploy -f refuses ${NGINX_TAG?msg} unset' abra app deploy $f -C -f -n
has "required variable NGINX_TAG" "$tmp/err" && pass "names the variable" || fail "? message"
abra app undeploy $f -n >/dev/null
wait_for 10 abra app rm $f -f -n || fail "rm $f"
# app new without -S: no secret, and abra refuses the deploy
g=f2.example.test
abra app new example -s default -D $g -n >/dev/null
expect_rc 1 "deploy of an app whose secrets were never generated" abra app deploy $g -n
has "secret not generated: api_key" "$tmp/err" && pass "says which secret" || fail "not generated message"
# -i: the env file's TYPE version is ignored, the latest release deploys
abra app rm $g -f -n >/dev/null
abra app new example 1.0.0+1.0 -s default -D $g -S -n >/dev/null
expect_rc 0 "deploy -i -o" abra app deploy $g -i -o -n
[ "$(docker service inspect --format '{{index .Spec.Labels "coop-cloud.f2_example_test.version"}}' f2_example_test_app)" = 1.1.0+1.0 ] &&
  pass "-i deploys the latest release, not the env file's" || fail "-i version"
abra app undeploy $g -n >/dev/null
wait_for 10 abra app rm $g -f -n || fail "rm $g"

echo "== call log"
python3 - "$CCCI_FAKE_STATE/calls.log" <<'PY' && pass "calls.log: valid lines, starts paired, one rm ok per app" || fail "calls.log"
import collections, json, sys
keys = {"ts", "pid", "prog", "abra_dir", "run_id", "step", "domain", "argv", "result"}
open_steps = {}
rm_ok = collections.Counter()
for n, line in enumerate(open(sys.argv[1]), 1):
    d = json.loads(line)
    assert set(d) == keys, (n, d)
    assert isinstance(d["ts"], int) and d["result"] in ("start", "ok", "fail", "hang"), d
    k = (d["pid"], d["step"])
    if d["result"] == "start":
        assert k not in open_steps, d
        open_steps[k] = d
    elif d["result"] in ("ok", "fail") and k in open_steps:
        assert open_steps.pop(k)["ts"] <= d["ts"]
    if d["step"] == "rm" and d["result"] == "ok":
        rm_ok[d["domain"]] += 1
# only the killed (hanging) steps may stay open, and they log "hang" instead
assert not open_steps, open_steps
for i in range(1, 17):
    dom = "c%d.example.test" % i
    assert rm_ok[dom] == 1, (dom, rm_ok[dom])
runs = {json.loads(l)["run_id"] for l in open(sys.argv[1])}
assert {"run-%d" % i for i in range(1, 17)} <= runs
assert rm_ok["t1.example.test"] == 1
PY

echo
if [ "$failures" -eq 0 ]; then
  echo "selftest: all checks passed"
  exit 0
fi
echo "selftest: $failures check(s) failed"
exit 1
