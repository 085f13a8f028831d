#!/usr/bin/env bash
# Self-test of the stand-in abra's swarm backend against the real Docker
# engine (SPEC section 10), with the example recipe's own images: the
# server binary on the host, then a full new/deploy/test/chaos-deploy/
# backup/restore/undeploy/rm cycle with real HTTP on 127.0.0.1:APP_PORT,
# the fault knobs, `volume is in use` right after an undeploy, a crash
# loop, the port scheme and a few concurrent apps. Prints one line per
# check and the measured timings; exits 1 if any check failed, 2 if no
# engine answers.
#
# Needs: a Docker engine (a one-node swarm is made with `docker swarm init
# --advertise-addr 127.0.0.1` when the node is inactive, and left active),
# gcc with static glibc (libc6-dev), python3. Every stack, container,
# volume, secret and network it makes is named after a per-run prefix and
# removed on every path (EXIT trap), as are the images it had to build
# (CCCI_DEV_KEEP_IMAGES=1 keeps them). Every wait is bounded.
# shellcheck disable=SC2015 # `COND && pass ... || fail ...` throughout: pass only
# echoes (status 0), so fail runs exactly when COND fails.
# shellcheck disable=SC2317 # the helpers are called indirectly (the EXIT trap,
# wait_for PREDICATE, a worker in the background), which shellcheck cannot see.
# shellcheck disable=SC2016 # '${VAR...}' in single quotes is compose text,
# for the stand-in abra to expand, not the shell.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
repo="$(cd "$here/../.." && pwd -P)"
fake_swarm="$repo/tests/fake-swarm"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/ccci-swarm-selftest.XXXXXX")"
prefix="sw$$" # every app of this run: ${prefix}-a.ccci.test → stack ${prefix}-a_ccci_test
pids=()       # background processes this script started
built_images=()

for v in $(env | sed -n 's/^\(CCCI_[A-Z_]*\)=.*/\1/p'); do
  [ "$v" = CCCI_DEV_KEEP_IMAGES ] || unset "$v"
done
export PATH="$fake_swarm:$PATH"
export CCCI_FAKE_STATE="$tmp/state"
export HOME="$tmp/home"
mkdir -p "$HOME"

ours() { grep -E "^${prefix}-[a-z0-9]+_ccci_test" || true; } # filter: names of our objects

cleanup() {
  local p st deadline
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for st in $(docker stack ls --format '{{.Name}}' 2>/dev/null | ours); do
    docker stack rm "$st" >/dev/null 2>&1
  done
  # containers of removed services go a few seconds later; bounded
  deadline=$((SECONDS + 90))
  while [ -n "$(docker ps -a --format '{{.Label "com.docker.stack.namespace"}}' 2>/dev/null | ours)" ] &&
    [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.2
  done
  for p in $(docker ps -a --format '{{.ID}} {{.Label "com.docker.stack.namespace"}}' 2>/dev/null |
    awk -v pre="^$prefix-[a-z0-9]+_ccci_test" '$2 ~ pre {print $1}'); do
    docker rm -f "$p" >/dev/null 2>&1
  done
  for p in $(docker volume ls -q 2>/dev/null | ours); do docker volume rm -f "$p" >/dev/null 2>&1; done
  for p in $(docker secret ls --format '{{.Name}}' 2>/dev/null | ours); do docker secret rm "$p" >/dev/null 2>&1; done
  for p in $(docker config ls --format '{{.Name}}' 2>/dev/null | ours); do docker config rm "$p" >/dev/null 2>&1; done
  for p in $(docker network ls --format '{{.Name}}' 2>/dev/null | ours); do docker network rm "$p" >/dev/null 2>&1; done
  # port claims of our env files (app rm releases them; a failed run may not)
  local pd
  pd="${TMPDIR:-/tmp}/ccci-fake-ports-$(id -u)"
  if [ -d "$pd" ]; then
    grep -l -s "^$tmp/" "$pd"/[0-9]* 2>/dev/null | xargs -r rm -f
  fi
  if [ "${CCCI_DEV_KEEP_IMAGES:-}" != 1 ]; then
    for p in "${built_images[@]}"; do docker image rm "$p" >/dev/null 2>&1; done
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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
# abra app undeploy DOMAIN, which is `docker stack rm`: the real engine can
# fail it half-way, the services gone and a network still "in use by task"
# left for good (moby/moby#31068; SPEC 4 step 10). That failure is the
# engine's, not the stand-in's: it counts as done, and network_left says so
# until remove_stack_networks has taken what it left. Any other failure is
# returned, its words on stderr.
network_left=
undeploy_engine() {
  local err
  err="$(abra app undeploy "$1" -n 2>&1 >/dev/null)" && return 0
  case "$err" in
  *"in use by task"*)
    network_left=1
    echo "      (the engine left a network in use: moby/moby#31068)"
    return 0
    ;;
  esac
  echo "$err" >&2
  return 1
}
# The networks of stack $1 that `docker stack rm` left (only those carrying
# its namespace label), once none of its containers remains; bounded retry
# on "in use", as cc-ci-run's teardown (SPEC 4, step 10).
remove_stack_networks() {
  local st="$1" n
  for _ in $(seq 1 100); do
    [ -z "$(docker ps -aq --filter "label=com.docker.stack.namespace=$st")" ] || {
      sleep 0.2
      continue
    }
    n="$(docker network ls -q --filter "label=com.docker.stack.namespace=$st")"
    [ -z "$n" ] && return 0
    # shellcheck disable=SC2086 # one id a word
    docker network rm $n >/dev/null 2>&1 || sleep 0.2
  done
  return 1
}
now_ms() { date +%s%3N; }
timings=()
timing() { timings+=("$(printf '%-44s %6d ms' "$1" "$2")"); }
app_field() { # app_field DOMAIN FIELD: from abra app ls -S -m
  abra app ls -S -m | python3 -c '
import json, sys
apps = [a for s in json.load(sys.stdin).values() for a in s["apps"]
        if a["domain"] == sys.argv[1]]
print(apps[0][sys.argv[2]] if apps else "<absent>")' "$1" "$2"
}
ns() { echo "label=com.docker.stack.namespace=$1"; }
count() { "$@" 2>/dev/null | grep -c .; }
replicas() { docker service ls --filter "$(ns "$1")" --format '{{.Replicas}}' 2>/dev/null; }
converged() { [ "$(replicas "$1")" = 1/1 ]; }
update_state() {
  docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$1_app" 2>/dev/null
}
updated() { [ "$(update_state "$1")" = completed ] && converged "$1"; }
# A redeploy that changes only service labels replaces no task, and the
# engine then drops UpdateStatus: 1/1 with no update state is settled too.
settled() {
  converged "$1" || return 1
  case "$(update_state "$1")" in "" | completed) return 0 ;; esac
  return 1
}
containers_gone() { [ -z "$(docker ps -aq --filter "$(ns "$1")")" ]; }
port_of() { sed -n 's/^APP_PORT=//p' "$ABRA_DIR/servers/default/$1.env"; }
http() { # http METHOD PORT PATH [DATA]: prints the body; exit 1 unless 200
  python3 - "$@" <<'PY'
import sys, urllib.request, urllib.error
method, port, path = sys.argv[1:4]
data = sys.argv[4].encode() if len(sys.argv) > 4 else None
req = urllib.request.Request("http://127.0.0.1:%s%s" % (port, path), data=data, method=method)
try:
    with urllib.request.urlopen(req, timeout=3) as r:
        sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    sys.stdout.write(e.read().decode())
    sys.exit(1)
PY
}
serves() { [ "$(http GET "$1" /)" = "ccci-example $2" ]; } # serves PORT VERSION

echo "== engine"
state="$(docker info --format '{{.Swarm.LocalNodeState}}' 2>"$tmp/err")" || {
  echo "selftest-swarm: no Docker engine answers: $(cat "$tmp/err")" >&2
  exit 2
}
if [ "$state" = inactive ]; then
  echo "      (docker swarm init --advertise-addr 127.0.0.1: the node was inactive)"
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null || {
    echo "selftest-swarm: docker swarm init failed" >&2
    exit 2
  }
  state="$(docker info --format '{{.Swarm.LocalNodeState}}')"
fi
[ "$state" = active ] && pass "swarm active" || fail "swarm state $state"
real="$(type -P docker)"
[ -n "$real" ] && [ "$(readlink -f "$real")" != "$(readlink -f "$here/docker")" ] &&
  pass "docker on PATH is the real CLI ($real)" || fail "docker on PATH is '$real'"
[ "$(type -P abra)" = "$fake_swarm/abra" ] && pass "abra is tests/fake-swarm/abra" || fail "abra is $(type -P abra)"
[ "$(type -P git)" = "$fake_swarm/git" ] && pass "git is tests/fake-swarm/git" || fail "git is $(type -P git)"
check "the git stand-in passes through to the real git" git --version

echo "== syntax"
for f in "$here/selftest-swarm.sh" "$fake_swarm/abra" "$repo/scripts/build-example-images.sh" \
  "$repo/examples/recipe/image/build.sh"; do
  check "sh -n $(basename "$f")" bash -n "$f"
done
check "python3 compiles example_app.py" \
  python3 -c 'import sys; compile(open(sys.argv[1]).read(), sys.argv[1], "exec")' \
  "$repo/examples/recipe/tests/example_app.py"
expect_rc 1 "unknown CCCI_FAKE_BACKEND is an error" env CCCI_FAKE_BACKEND=nope "$here/abra" app ls -m
has "CCCI_FAKE_BACKEND" "$tmp/err" && pass "names the variable" || fail "unknown backend message"

echo "== the server on the host (static binary, no engine)"
check "gcc -static server.c" gcc -static -O2 -Wall -Wextra -Werror -o "$tmp/server" \
  '-DVERSION="9.9.9-test"' "$repo/examples/recipe/image/server.c"
[ "$("$tmp/server" --version)" = 9.9.9-test ] && pass "--version prints the compiled-in version" ||
  fail "--version"
file_is_static() { ! grep -q "interpreter" <(LC_ALL=C readelf -l "$1" 2>/dev/null) && [ -s "$1" ]; }
if command -v readelf >/dev/null; then
  file_is_static "$tmp/server" && pass "statically linked (no program interpreter)" || fail "not static"
fi
hport="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
mkdir -p "$tmp/hostdata"
PORT="$hport" DATA_DIR="$tmp/hostdata" "$tmp/server" 2>"$tmp/server.log" &
srv=$!
pids+=("$srv")
if wait_for 10 serves "$hport" 9.9.9-test; then
  pass "GET / serves the version"
  expect_rc 1 "GET /data before any PUT is 404" http GET "$hport" /data
  check "PUT /data" http PUT "$hport" /data "host marker"
  [ "$(http GET "$hport" /data)" = "host marker" ] && [ "$(cat "$tmp/hostdata/marker")" = "host marker" ] &&
    pass "GET /data returns what PUT stored, in DATA_DIR/marker" || fail "data round trip"
  check "POST /data (100 kB)" http POST "$hport" /data "$(head -c 100000 /dev/zero | tr '\0' x)"
  [ "$(http GET "$hport" /data | wc -c)" = 100000 ] && pass "100 kB round trip" || fail "100 kB round trip"
  expect_rc 1 "unknown path is 404" http GET "$hport" /nope
  kill -TERM "$srv"
  t0=$(now_ms)
  wait "$srv"
  rc=$?
  [ $rc -eq 0 ] && [ $(($(now_ms) - t0)) -lt 1000 ] && pass "SIGTERM ends it at once with status 0" ||
    fail "SIGTERM: exit $rc"
else fail "server on the host never answered"; fi

echo "== images"
for v in 1.0.0 1.1.0 2.0.0-pr; do
  docker image inspect "ccci-example:$v" >/dev/null 2>&1 || built_images+=("ccci-example:$v")
done
t0=$(now_ms)
check "build-example-images.sh" "$repo/scripts/build-example-images.sh"
timing "build the missing images (${#built_images[@]})" $(($(now_ms) - t0))
t0=$(now_ms)
check "build-example-images.sh again (idempotent)" "$repo/scripts/build-example-images.sh"
ms=$(($(now_ms) - t0))
timing "build-example-images.sh when present" $ms
[ "$(grep -c 'is up to date' "$tmp/out")" = 3 ] && [ $ms -lt 3000 ] &&
  pass "all three up to date, nothing rebuilt (${ms} ms)" || fail "second build was not a no-op (${ms} ms)"
for v in 1.0.0 1.1.0 2.0.0-pr; do
  [ "$(docker image inspect --format '{{index .Config.Labels "ccci.example.version"}}' "ccci-example:$v" 2>/dev/null)" = "$v" ] &&
    pass "ccci-example:$v present" || fail "ccci-example:$v missing"
done

echo "== example recipe"
check "make-example-recipe.sh" "$repo/scripts/make-example-recipe.sh" "$tmp/ex"
export ABRA_DIR="$tmp/ex/abra-home"
recipe="$ABRA_DIR/recipes/example"
[ -x "$recipe/image/build.sh" ] && [ ! -x "$recipe/tests/example_app.py" ] &&
  pass "recipe carries image/ (build.sh executable) and the test helper (not executable)" ||
  fail "recipe layout"

echo "== app new"
d="${prefix}-a.ccci.test"
s="${prefix}-a_ccci_test"
env_file="$ABRA_DIR/servers/default/$d.env"
tenv=(env CCCI_APP_DOMAIN="$d" CCCI_STACK="$s" CCCI_RECIPE=example CCCI_SERVER=default CCCI_RUN_ID=selftest-swarm)
expect_rc 0 "app new example 1.1.0+1.0 -S" abra app new example 1.1.0+1.0 -s default -D "$d" -S -n
port="$(port_of "$d")"
[[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 20000 ] && [ "$port" -le 29999 ] &&
  pass "APP_PORT=$port in 20000-29999" || fail "APP_PORT '$port'"
[ "$(grep -c '^APP_PORT=' "$env_file")" = 1 ] && has "^TYPE=example:1.1.0+1.0$" "$env_file" &&
  pass "env file: one APP_PORT line, TYPE" || fail "env file content"
[ "$(git -C "$recipe" describe --tags --exact-match 2>/dev/null)" = 1.1.0+1.0 ] &&
  pass "checkout moved to 1.1.0+1.0" || fail "checkout not at 1.1.0+1.0"
[ "$(docker secret ls --filter "name=${s}_" --format '{{.Name}}')" = "${s}_api_key_v1" ] &&
  [ "$(docker secret inspect --format '{{index .Spec.Labels "com.docker.stack.namespace"}}' "${s}_api_key_v1")" = "" ] &&
  pass "real secret ${s}_api_key_v1, without the stack label (stack rm keeps it)" || fail "secret"
claims="${TMPDIR:-/tmp}/ccci-fake-ports-$(id -u)"
[ "$(cat "$claims/$port" 2>/dev/null)" = "$(readlink -f "$env_file")" ] &&
  pass "port claim names the env file" || fail "port claim"
expect_rc 1 "app new again (env file exists)" abra app new example -s default -D "$d" -S -n
[ "$(count docker secret ls -q --filter "name=${s}_")" = 1 ] && pass "failed new made no second secret" ||
  fail "secrets after a failed new"

echo "== install: deploy 1.1.0+1.0"
t0=$(now_ms)
expect_rc 0 "deploy 1.1.0+1.0 -c" abra app deploy "$d" 1.1.0+1.0 -c -n
timing "abra app deploy (first)" $(($(now_ms) - t0))
if wait_for 60 converged "$s"; then
  timing "first deploy → 1/1 running" $(($(now_ms) - t0))
  pass "converged (1/1)"
else fail "never converged: $(replicas "$s")"; fi
if wait_for 30 serves "$port" 1.1.0; then
  timing "first deploy → HTTP answers on 127.0.0.1" $(($(now_ms) - t0))
  pass "127.0.0.1:$port serves ccci-example 1.1.0"
else fail "127.0.0.1:$port does not serve 1.1.0: $(http GET "$port" / 2>&1)"; fi
docker service inspect "${s}_app" >"$tmp/inspect" 2>&1
python3 - "$tmp/inspect" "$s" "$port" <<'PY' && pass "labels (version, chaos, recipe), host-mode port" || fail "service spec"
import json, sys
d = json.load(open(sys.argv[1]))[0]
s, port = sys.argv[2], int(sys.argv[3])
l = d["Spec"]["Labels"]
assert l["coop-cloud.%s.version" % s] == "1.1.0+1.0", l
assert l["coop-cloud.%s.chaos" % s] == "false", l
assert l["coop-cloud.%s.recipe" % s] == "example", l
assert "coop-cloud.%s.chaos-version" % s not in l, l
assert l["com.docker.stack.namespace"] == s
p = d["Endpoint"]["Spec"]["Ports"][0]
assert (p["PublishedPort"], p["TargetPort"], p["PublishMode"]) == (port, 8080, "host"), p
assert d["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "ccci-example:1.1.0"
PY
[ "$(app_field "$d" status)/$(app_field "$d" version)/$(app_field "$d" chaos)" = deployed/1.1.0+1.0/false ] &&
  pass "ls -S -m: deployed 1.1.0+1.0, chaos false" || fail "ls -S -m after deploy"
[ "$(abra app ls -m | python3 -c 'import json,sys; print(json.load(sys.stdin)["default"]["apps"][0]["status"])')" = "" ] &&
  pass "ls -m without -S: empty status" || fail "ls without -S"
expect_rc 1 "deploy again without -f" abra app deploy "$d" -n
has "$d is already deployed" "$tmp/err" && pass "says already deployed" || fail "already-deployed message"
[ "$(docker volume ls -q --filter "$(ns "$s")")" = "${s}_data" ] && pass "real volume ${s}_data" || fail "volume"
expect_rc 0 "00-deployed.sh (install)" "${tenv[@]}" CCCI_TIER=install "$recipe/tests/00-deployed.sh"
has "serves ccci-example 1.1.0" "$tmp/out" && has "marker written" "$tmp/out" &&
  pass "install test checked the version over HTTP and wrote the marker" ||
  { fail "install test output"; sed 's/^/      | /' "$tmp/out"; }
marker="$("${tenv[@]}" python3 "$recipe/tests/example_app.py" marker)"
[ "$(http GET "$port" /data)" = "$marker" ] && pass "marker is in the volume" || fail "marker not in the volume"
expect_rc 0 "example tests say they run in http mode" "${tenv[@]}" python3 "$recipe/tests/example_app.py" mode
[ "$(cat "$tmp/out")" = "http $port" ] && pass "mode: http $port" || fail "mode: $(cat "$tmp/out")"
expect_rc 0 "CCCI_FAKE_BACKEND=file turns HTTP checks off" "${tenv[@]}" CCCI_FAKE_BACKEND=file \
  python3 "$recipe/tests/example_app.py" mode
has "^none" "$tmp/out" && pass "mode: none with the file backend" || fail "mode with file backend"

echo "== upgrade: chaos deploy of the pull request head"
git -C "$recipe" fetch -q origin refs/pull/1/head && git -C "$recipe" checkout -q FETCH_HEAD
pr8="$(git -C "$recipe" rev-parse HEAD | cut -c1-8)"
t0=$(now_ms)
expect_rc 0 "deploy -C -f -c" abra app deploy "$d" -C -f -c -n
timing "abra app deploy -C (upgrade)" $(($(now_ms) - t0))
if wait_for 60 updated "$s"; then
  timing "upgrade → UpdateStatus completed, 1/1" $(($(now_ms) - t0))
  pass "update completed"
else fail "update state '$(update_state "$s")', replicas $(replicas "$s")"; fi
wait_for 30 serves "$port" 2.0.0-pr && pass "127.0.0.1:$port serves 2.0.0-pr" || fail "not serving 2.0.0-pr"
[ "$(app_field "$d" chaos)/$(app_field "$d" chaosVersion)" = "true/$pr8" ] &&
  pass "ls -S -m: chaos true, chaosVersion $pr8" || fail "chaos fields"
[ "$(http GET "$port" /data)" = "$marker" ] && pass "the volume kept the marker across the upgrade" ||
  fail "marker lost in the upgrade"
for t in 00-deployed.sh 10-upgraded.sh 30-pr-image.sh; do
  expect_rc 0 "$t (upgrade)" "${tenv[@]}" CCCI_TIER=upgrade "$recipe/tests/$t"
  has "serves ccci-example 2.0.0-pr" "$tmp/out" && pass "$t checked 2.0.0-pr over HTTP" ||
    { fail "$t did not check the served version"; sed 's/^/      | /' "$tmp/out"; }
done
echo scratch >"$recipe/scratch"
expect_rc 0 "deploy -C -f on a dirty checkout" abra app deploy "$d" -C -f -n
[ "$(docker service inspect --format "{{index .Spec.Labels \"coop-cloud.$s.chaos-version\"}}" "${s}_app")" = "$pr8+U" ] &&
  pass "chaos-version $pr8+U" || fail "dirty chaos-version"
expect_rc 1 "10-upgraded.sh fails on a dirty chaos version" "${tenv[@]}" CCCI_TIER=upgrade "$recipe/tests/10-upgraded.sh"
expect_rc 1 "non-chaos deploy -f refuses the dirty checkout" abra app deploy "$d" 1.1.0+1.0 -f -n
rm -f "$recipe/scratch"
expect_rc 0 "deploy -C -f again, clean" abra app deploy "$d" -C -f -n
wait_for 60 settled "$s" && pass "settled" || fail "not settled after the clean redeploy"

echo "== backup and restore"
t0=$(now_ms)
expect_rc 0 "backup create" abra app backup create "$d" -n
timing "abra app backup create" $(($(now_ms) - t0))
[ "$(cat "$CCCI_FAKE_STATE/backups/$d/data/marker" 2>/dev/null)" = "$marker" ] &&
  pass "backup holds the volume's marker" || fail "backup content"
check "PUT /data (overwrite after the backup)" http PUT "$port" /data "overwritten"
[ "$(http GET "$port" /data)" = overwritten ] && pass "overwritten" || fail "overwrite"
t0=$(now_ms)
expect_rc 0 "restore" abra app restore "$d" -n
timing "abra app restore" $(($(now_ms) - t0))
[ "$(http GET "$port" /data)" = "$marker" ] && pass "restore brought the marker back into the volume" ||
  fail "restore: GET /data is '$(http GET "$port" /data)'"
for t in 00-deployed.sh 20-restored.sh; do
  expect_rc 0 "$t (restore)" "${tenv[@]}" CCCI_TIER=restore "$recipe/tests/$t"
done
has "came back from backup and restore" "$tmp/out" && pass "20-restored.sh read the marker over HTTP" ||
  fail "20-restored.sh output"
check "PUT /data (overwrite again)" http PUT "$port" /data "lost"
expect_rc 1 "20-restored.sh fails when the data is not the marker" "${tenv[@]}" CCCI_TIER=restore "$recipe/tests/20-restored.sh"
abra app restore "$d" -n >/dev/null 2>&1

echo "== fault knobs"
expect_rc 1 "FAIL=undeploy" env CCCI_FAKE_ABRA_FAIL=undeploy abra app undeploy "$d" -n
[ "$(app_field "$d" status)" = deployed ] && converged "$s" && pass "failed undeploy changed nothing" ||
  fail "state after FAIL=undeploy"
expect_rc 1 "FAIL=backup@$d" env CCCI_FAKE_ABRA_FAIL="backup@$d" abra app backup create "$d" -n
expect_rc 1 "FAIL=ls" env CCCI_FAKE_ABRA_FAIL=ls abra app ls -S -m
expect_rc 0 "FAIL=deploy@other spares this app" env CCCI_FAKE_ABRA_FAIL=deploy@other.ccci.test abra app deploy "$d" -C -f -n
before="$(docker service inspect --format '{{.Version.Index}}' "${s}_app")"
CCCI_FAKE_ABRA_HANG="deploy-chaos@$d" abra app deploy "$d" -C -f -n >/dev/null 2>&1 &
p=$!
pids+=("$p")
if wait_for 10 test -e "$CCCI_FAKE_STATE/hang/deploy-chaos.$p"; then
  pass "HANG=deploy-chaos@domain writes hang/deploy-chaos.<pid> (pid of the wrapper: exec)"
  [ "$(docker service inspect --format '{{.Version.Index}}' "${s}_app")" = "$before" ] &&
    pass "hanging deploy changed nothing on the engine" || fail "service changed while hanging"
  kill -TERM "$p"
  wait "$p"
  rc=$?
  [ $rc -eq 143 ] && pass "hanging abra dies on SIGTERM" || fail "hanging abra exit $rc"
else fail "no hang marker"; fi
python3 - "$CCCI_FAKE_STATE/calls.log" "$d" <<'PY' && pass "call log: start/fail of the injected undeploy, hang line, ok deploys" || fail "call log"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
d = sys.argv[2]
res = [(l["step"], l["result"]) for l in lines if l["domain"] == d]
assert ("undeploy", "start") in res and ("undeploy", "fail") in res, res
assert ("deploy-chaos", "hang") in res, res
assert res.count(("deploy", "ok")) == 1, res
assert res.count(("new", "ok")) == 1, res
PY
wait_for 60 settled "$s" || fail "not settled after the knobs"

echo "== undeploy: volume is in use, then rm"
expect_rc 1 "rm while deployed" abra app rm "$d" -n
has "still deployed" "$tmp/err" && [ -e "$env_file" ] && pass "says still deployed, keeps the app" || fail "still deployed"
t0=$(now_ms)
expect_rc 0 "undeploy" undeploy_engine "$d"
t1=$(now_ms)
timing "abra app undeploy (returns)" $((t1 - t0))
[ "$(count docker service ls -q --filter "$(ns "$s")")" = 0 ] && pass "services gone at once" || fail "services left"
[ "$(count docker ps -aq --filter "$(ns "$s")")" -ge 1 ] && pass "containers still there right after" ||
  fail "no container right after undeploy"
expect_rc 1 "rm right after undeploy" abra app rm "$d" -n
has "Error response from daemon: remove ${s}_data: volume is in use - \[" "$tmp/err" &&
  pass "says docker's 'volume is in use'" || fail "volume-in-use message"
[ -e "$env_file" ] && [ "$(count docker secret ls -q --filter "name=${s}_")" = 1 ] &&
  pass "the undeploy and the failed rm kept env file and secret" || fail "env file or secret gone"
[ "$(app_field "$d" status)" = unknown ] && pass "ls -S -m: unknown after undeploy" || fail "status after undeploy"
expect_rc 1 "undeploy again" abra app undeploy "$d" -n
has "$d is not deployed" "$tmp/err" && pass "says not deployed" || fail "not-deployed message"
if wait_for 90 containers_gone "$s"; then
  timing "stack rm → containers gone" $(($(now_ms) - t0))
  pass "containers gone"
else fail "containers never went"; fi
if wait_for 30 sh -c "[ -z \"\$(docker network ls -q --filter $(ns "$s"))\" ]"; then
  pass "network gone"
elif [ -n "$network_left" ] && remove_stack_networks "$s"; then
  pass "network gone (removed what stack rm left)"
else fail "network left"; fi
network_left=
expect_rc 0 "rm" abra app rm "$d" -n
[ ! -e "$env_file" ] && [ -z "$(docker volume ls -q --filter "$(ns "$s")")" ] &&
  [ -z "$(docker secret ls -q --filter "name=${s}_")" ] && [ ! -e "$claims/$port" ] &&
  pass "rm removed the volume, the secret, the env file and the port claim" || fail "rm left something"
expect_rc 1 "rm again" abra app rm "$d" -n
has "app $d does not exist" "$tmp/err" && pass "says does not exist" || fail "does-not-exist message"

echo "== crash loop, and the same port again"
c="${prefix}-b.ccci.test"
cs="${prefix}-b_ccci_test"
abra app new example -s default -D "$c" -S -n >/dev/null
cport="$(port_of "$c")"
expect_rc 0 "deploy with CCCI_FAKE_ABRA_CRASHLOOP" env CCCI_FAKE_ABRA_CRASHLOOP="$c" abra app deploy "$c" -n
sleep 3
[ "$(replicas "$cs")" = 0/1 ] && pass "never a running replica (3 s)" || fail "crash loop replicas $(replicas "$cs")"
expect_rc 0 "undeploy the crash loop" undeploy_engine "$c"
wait_for 90 containers_gone "$cs" && pass "its containers went" || fail "crash loop containers left"
remove_stack_networks "$cs" && pass "its network went" || fail "crash loop network left"
expect_rc 0 "rm" abra app rm "$c" -n
expect_rc 0 "app new of the same domain" abra app new example -s default -D "$c" -S -n
[ "$(port_of "$c")" = "$cport" ] && pass "same domain, same port ($cport)" || fail "port $(port_of "$c") != $cport"
expect_rc 0 "rm of a never-deployed app" abra app rm "$c" -n

echo "== concurrent apps"
worker() { # one run: own ABRA_DIR like cc-ci-run's run tree, shared servers
  local i="$1" dom="${prefix}-c$1.ccci.test" dir="$tmp/runs/$1" p v
  v=$([ $((i % 2)) -eq 0 ] && echo 1.0.0 || echo 1.1.0)
  mkdir -p "$dir/recipes"
  ln -s "$tmp/ex/abra-home/servers" "$dir/servers"
  git clone -q --shared "$tmp/ex/upstream.git" "$dir/recipes/example" || return 1
  export ABRA_DIR="$dir" CCCI_RUN_ID="run-$i"
  abra app new example "$v+1.0" -s default -D "$dom" -S -n >/dev/null || return 2
  p="$(sed -n 's/^APP_PORT=//p' "$dir/servers/default/$dom.env")"
  abra app deploy "$dom" "$v+1.0" -n >/dev/null || return 3
  wait_for 90 serves "$p" "$v" || return 4
  echo "$p" >"$tmp/runs/$i.port"
  undeploy_engine "$dom" || return 5
  for _ in $(seq 1 300); do # rm fails while the containers remain
    if abra app rm "$dom" -n >/dev/null 2>&1; then
      remove_stack_networks "${dom//./_}" && return 0
    fi
    sleep 0.3
  done
  return 6
}
t0=$(now_ms)
wpids=()
for i in 1 2 3 4; do
  worker "$i" &
  wpids+=("$!")
  pids+=("$!")
done
bad=0
for p in "${wpids[@]}"; do wait "$p" || bad=$((bad + 1)); done
timing "4 concurrent new/deploy/HTTP/undeploy/rm" $(($(now_ms) - t0))
[ $bad -eq 0 ] && pass "4 concurrent cycles, each served its version on its own port" || fail "$bad workers failed"
[ "$(cat "$tmp"/runs/*.port 2>/dev/null | sort -u | wc -l)" = 4 ] && pass "4 distinct ports" || fail "ports collided"

echo "== recipes as abra reads them (anchors, merge keys, abra.sh, required variables, secrets)"
# A recipe of the shapes public recipes have (written here): labels through
# anchors and merge keys, a template_driver: golang config versioned in
# abra.sh, versioned secrets with modifiers, then a required variable.
fd="${prefix}-f.ccci.test"
fs="${prefix}-f_ccci_test"
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
    image: ccci-example:1.1.0
    labels: {<<: *backup, container.only: "yes"}
    environment:
      - DATA_DIR=/cfg
    ports:
      - target: 8080
        published: ${APP_PORT:-8080}
        protocol: tcp
        mode: host
    secrets: [db_password, smtp_password]
    configs:
      - source: forms_conf
        target: /cfg/marker
    deploy:
      labels:
        <<: [*traefik, *owned]
        owner: app
secrets:
  db_password:
    external: true
    name: ${STACK_NAME}_db_password_${SECRET_DB_PASSWORD_VERSION}
  smtp_password:
    external: true
    name: ${STACK_NAME}_smtp_password_${SECRET_SMTP_PASSWORD_VERSION}
configs:
  forms_conf:
    name: ${STACK_NAME}_forms_conf_${FORMS_CONF_VERSION}
    file: forms.conf.tmpl
    template_driver: golang
EOF
cat >"$fr/.env.sample" <<'EOF'
TYPE=forms
DOMAIN=forms.example.com
SECRET_DB_PASSWORD_VERSION=v1  # length=48
SECRET_SMTP_PASSWORD_VERSION=v1 # generate=false
SECRET_UNUSED_VERSION=v1
APP_PORT=8080
EOF
printf 'export NGINX_CONF_VERSION=v2\nexport FORMS_CONF_VERSION=v3\n' >"$fr/abra.sh"
echo 'service {{ .Service.Name }}' >"$fr/forms.conf.tmpl"
git -C "$fr" init -q && git -C "$fr" add -A &&
  git -C "$fr" -c user.email=t@t -c user.name=t commit -qm forms
expect_rc 0 "app new -S of a recipe with versioned secrets" abra app new forms -s default -D "$fd" -S -C -n
has "│ db_password *│ [A-Za-z0-9]\{48\} *│" "$tmp/out" && has "│ NAME *│ VALUE *│" "$tmp/out" &&
  pass "prints the generated secret in a NAME/VALUE table (# length=48)" || fail "secrets table"
[ "$(docker secret ls --format '{{.Name}}' --filter "name=${fs}_")" = "${fs}_db_password_v1" ] &&
  pass "docker secret create of the compose files' secret, not # generate=false" ||
  fail "secrets: $(docker secret ls --format '{{.Name}}' --filter "name=${fs}_")"
expect_rc 1 "deploy without the # generate=false secret" abra app deploy "$fd" -C -n
has "secret not inserted (#generate=false): smtp_password" "$tmp/err" && [ "$(count replicas "$fs")" = 0 ] &&
  pass "refused as abra refuses it, nothing deployed" || fail "missing secret"
printf 'by hand' | docker secret create "${fs}_smtp_password_v1" - >/dev/null
expect_rc 0 "deploy -C -o once every secret exists" abra app deploy "$fd" -C -o -n
docker service inspect "${fs}_app" >"$tmp/inspect" 2>&1
python3 - "$tmp/inspect" <<'PY' && pass "merge keys applied: deploy labels and container labels" || fail "merged labels"
import json, sys
spec = json.load(open(sys.argv[1]))[0]["Spec"]
svc, ctr = spec["Labels"], spec["TaskTemplate"]["ContainerSpec"]["Labels"]
assert svc["traefik.enable"] == "true" and svc["owner"] == "app", svc
assert svc["nginx.conf-version"] == "v2", svc   # abra.sh export
assert ctr["backupbot.backup"] == "true" and ctr["container.only"] == "yes", ctr
assert "backupbot.backup" not in svc, svc
PY
[ "$(docker config ls --format '{{.Name}}' --filter "name=${fs}_")" = "${fs}_forms_conf_v3" ] &&
  pass "the golang config is named with abra.sh's version" || fail "config $(docker config ls --format '{{.Name}}' --filter "name=${fs}_")"
# the example server answers GET /data with DATA_DIR/marker: the config
# file as the engine rendered it into the task (docker cp cannot see it)
renders() { [ "$(http GET "$(port_of "$fd")" /data)" = "service ${fs}_app" ]; }
wait_for 90 renders && pass "its task runs with the config rendered by the engine" ||
  fail "config not rendered: $(http GET "$(port_of "$fd")" /data)"
expect_rc 0 "undeploy" undeploy_engine "$fd"
sed -i 's/^    image: ccci-example:1.1.0$/    image: ccci-example:${EXAMPLE_TAG:?set EXAMPLE_TAG in the env file}/' "$fr/compose.yml"
expect_rc 1 'deploy refuses ${EXAMPLE_TAG:?msg}' abra app deploy "$fd" -C -n
has "required variable EXAMPLE_TAG is missing a value: set EXAMPLE_TAG in the env file" "$tmp/err" &&
  [ "$(count docker service ls -q --filter "$(ns "$fs")")" = 0 ] && pass "names the variable, nothing deployed" ||
  fail ":? refusal"
wait_for 90 containers_gone "$fs" && pass "its containers went" || fail "forms containers left"
remove_stack_networks "$fs" || fail "forms network left"
network_left=
expect_rc 0 "rm (secrets, the hand-made one too)" abra app rm "$fd" -n
[ -z "$(docker secret ls -q --filter "name=${fs}_")" ] && [ -z "$(docker config ls -q --filter "name=${fs}_")" ] &&
  pass "no secret or config of it left" || fail "forms left secrets or configs"

echo "== nothing left"
[ -z "$(docker stack ls --format '{{.Name}}' | ours)" ] && pass "docker stack ls" || fail "stacks left"
[ -z "$(docker ps -a --format '{{.Label "com.docker.stack.namespace"}}' | ours)" ] && pass "docker ps -a" || fail "containers left"
[ -z "$(docker volume ls -q | ours)" ] && pass "docker volume ls" || fail "volumes left"
[ -z "$(docker secret ls --format '{{.Name}}' | ours)" ] && pass "docker secret ls" || fail "secrets left"
[ -z "$(docker config ls --format '{{.Name}}' | ours)" ] && pass "docker config ls" || fail "configs left"
[ -z "$(docker network ls --format '{{.Name}}' | ours)" ] && pass "docker network ls" || fail "networks left"
! grep -q -s "^$tmp/" "$claims"/[0-9]* 2>/dev/null && pass "no port claim" || fail "port claims left"

echo
echo "timings (this machine):"
printf '  %s\n' "${timings[@]}"
echo
if [ "$failures" -eq 0 ]; then
  echo "selftest-swarm: all checks passed"
  exit 0
fi
echo "selftest-swarm: $failures check(s) failed"
exit 1
