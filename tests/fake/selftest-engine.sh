#!/usr/bin/env bash
# Self-test of the stand-in engine (tests/fake/engine): the Engine API over
# a unix socket, driven with curl, on one fake swarm shared with the
# stand-in abra and docker; the knobs read from the CALLER's environment;
# a hanging handler beside a live one; the engine's exits (state directory
# removed, SIGTERM, parent death) leaving no socket. Prints one line per
# check and exits 1 if any failed. Every wait is bounded; the EXIT trap
# stops what this script started and removes its directory.
# shellcheck disable=SC2015 # `COND && pass ... || fail ...` throughout: pass only
# echoes (status 0), so fail runs exactly when COND fails.
# shellcheck disable=SC2016 # sh -c '... "$1" ...' _ ARG: expanded by that sh.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
repo="$(cd "$here/../.." && pwd -P)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/ccci-engine-selftest.XXXXXX")"
pids=() # background processes this script started

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.2
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

command -v curl >/dev/null || {
  echo "selftest-engine: needs curl (apt-get install -y curl)" >&2
  exit 2
}

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
wait_for() { # wait_for SECONDS COMMAND...: until the command succeeds
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}
gone() { # gone PID: no such process, or a zombie
  [ ! -e "/proc/$1" ] || [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" = Z ]
}
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
label_q() { echo "filters=$(enc "{\"label\":[\"$1\"]}")"; } # label_q K=V
stack_q() { label_q "com.docker.stack.namespace=$1"; }

sock="$tmp/engine.sock"
# api [ENV=VAL...] METHOD PATH: the status code on stdout; body in
# $tmp/body, headers in $tmp/headers. ENV=VAL items go into curl's own
# environment: the caller's environment, where the engine reads its knobs.
api() {
  local envs=()
  while [[ "$1" == *=* ]]; do
    envs+=("$1")
    shift
  done
  local method="$1" path="$2" head=()
  shift 2
  [ "$method" = HEAD ] && head=(-I)
  env "${envs[@]}" curl -sS --max-time 10 "${head[@]}" -X "$method" -D "$tmp/headers" \
    -o "$tmp/body" -w '%{http_code}' --unix-socket "$sock" "http://engine$path" "$@"
}
# j EXPR: evaluate EXPR on the JSON in $tmp/body (bound to d); prints it
# (true/false for booleans)
j() {
  python3 -c 'import json,sys; d=json.load(open(sys.argv[2])); r=eval(sys.argv[1]); print(str(r).lower() if isinstance(r,bool) else r)' "$1" "$tmp/body"
}
expect() { # expect STATUS DESC [ENV=VAL...] METHOD PATH [curl args]
  local want="$1" desc="$2" got
  shift 2
  got="$(api "$@")"
  if [ "$got" = "$want" ]; then pass "$desc"; else
    fail "$desc (status $got, want $want)"
    sed 's/^/      | /' "$tmp/body" 2>/dev/null | head -10
  fi
}
message_is() { # message_is TEXT: the error body is {"message": TEXT}
  [ "$(j 'd["message"]')" = "$1" ]
}
start_engine() { # start_engine SOCKET STDERR: starts an engine, waits for its socket; sets epid
  "$here/engine" --socket "$1" 2>"$2" &
  epid=$!
  pids+=("$epid")
  wait_for 10 test -S "$1"
}

echo "== syntax"
check "python3 compiles engine" python3 -c 'import sys; compile(open(sys.argv[1]).read(), sys.argv[1], "exec")' "$here/engine"
check "python3 compiles ccci_fake/api.py" python3 -c 'import sys; compile(open(sys.argv[1]).read(), sys.argv[1], "exec")' "$here/ccci_fake/api.py"
check "engine without CCCI_FAKE_STATE exits 1" sh -c 'env -u CCCI_FAKE_STATE timeout 5 "$1" --socket "$2/x.sock" 2>/dev/null; [ $? = 1 ]' _ "$here/engine" "$tmp"
check "engine without --socket exits 1" sh -c 'timeout 5 "$1" 2>/dev/null; [ $? = 1 ]' _ "$here/engine"

echo "== start"
if start_engine "$sock" "$tmp/engine.err"; then pass "the socket appears (bound, listening, renamed)"; else
  fail "no socket after 10 s"
  cat "$tmp/engine.err"
  exit 1
fi
main_pid=$epid
[ -z "$(find "$tmp" -maxdepth 1 -name 'engine.sock.tmp*' -print -quit)" ] &&
  pass "no temporary socket name left" || fail "temporary socket left: $(ls -a "$tmp")"

echo "== ping, version, info"
expect 200 "GET /_ping" GET /_ping
[ "$(cat "$tmp/body")" = OK ] && pass "ping body is OK" || fail "ping body: $(cat "$tmp/body")"
grep -qi '^Api-Version: 1.41' "$tmp/headers" && grep -qi '^OSType: linux' "$tmp/headers" &&
  grep -qi '^Docker-Experimental: false' "$tmp/headers" &&
  pass "ping headers Api-Version, OSType, Docker-Experimental" || fail "ping headers: $(cat "$tmp/headers")"
grep -q '^HTTP/1.1 200' "$tmp/headers" && grep -qi '^Connection: close' "$tmp/headers" &&
  pass "HTTP/1.1, Connection: close" || fail "status line/connection: $(cat "$tmp/headers")"
expect 200 "HEAD /_ping" HEAD /_ping
expect 200 "GET /v1.41/_ping (version prefix)" GET /v1.41/_ping
expect 200 "GET /version" GET /version
[ "$(j 'd["ApiVersion"], d["MinAPIVersion"], d["Os"], d["Arch"]')" = "('1.41', '1.12', 'linux', 'amd64')" ] &&
  [ "$(j 'd["Version"]')" = "$(docker version --format '{{.Server.Version}}')" ] &&
  pass "version: the CLI stand-in's engine version, API 1.41" || fail "version: $(cat "$tmp/body")"
expect 200 "GET /v1.41/info" GET /v1.41/info
[ "$(j 'd["Swarm"]["LocalNodeState"], d["Swarm"]["NodeID"], d["Swarm"]["ControlAvailable"]')" = "('active', 'ccci0fake0node', True)" ] &&
  [[ "$(j 'd["SystemTime"]')" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$ ]] &&
  [ "$(j 'd["ServerVersion"]')" = "$(docker info --format '{{.ServerVersion}}')" ] &&
  pass "info: swarm active, SystemTime in RFC 3339 nanoseconds, ServerVersion" || fail "info: $(cat "$tmp/body")"

echo "== errors"
expect 404 "unknown path" GET /v1.41/nothing/here
message_is "page not found" && pass "page not found" || fail "unknown path body: $(cat "$tmp/body")"
expect 400 "a version above 1.41" GET /v1.99/info
expect 400 "malformed filters" GET "/services?filters=$(enc '{"label":')"
expect 400 "an unknown filter" GET "/containers/json?filters=$(enc '{"bogus":["x"]}')"
message_is "Invalid filter 'bogus'" && pass "says Invalid filter 'bogus'" || fail "unknown filter message: $(cat "$tmp/body")"
expect 501 "GET /events is not served (the client polls)" GET /events
expect 404 "GET /configs is not served" GET /configs

echo "== an app deployed by the stand-in abra"
check "builds the example recipe" "$repo/scripts/make-example-recipe.sh" "$tmp/ex"
export ABRA_DIR="$tmp/ex/abra-home"
d=e1.example.test
s=e1_example_test
export CCCI_FAKE_ABRA_CONVERGE_MS=300
check "abra app new" abra app new example -s default -D $d -S -n
check "abra app deploy" abra app deploy $d 1.1.0+1.0 -n
running() { # the app's task runs, as the API shows it
  [ "$(api GET "/tasks?filters=$(enc "{\"service\":[\"${s}_app\"]}")")" = 200 ] &&
    [ "$(j '[t["Status"]["State"] for t in d]')" = "['running']" ]
}
wait_for 10 running && pass "GET /tasks: the task runs after convergence" || fail "never running: $(cat "$tmp/body")"

echo "== services"
expect 200 "GET /services by stack label" GET "/services?$(stack_q $s)"
[ "$(j '[x["Spec"]["Name"] for x in d]')" = "['${s}_app']" ] && pass "one service, ${s}_app" || fail "services: $(cat "$tmp/body")"
sid="$(j 'd[0]["ID"]')"
tt='d[0]["Spec"]["TaskTemplate"]'
[ "$(j "'RestartPolicy' in $tt, 'StopGracePeriod' in ${tt}['ContainerSpec'], ${tt}.get('Runtime')")" = "(False, False, 'container')" ] &&
  pass "the list's task template is the raw spec (no RestartPolicy, no StopGracePeriod) plus Runtime" ||
  fail "list template: $(j "$tt")"
[ "$(j "d[0]['Spec']['Labels']['com.docker.stack.namespace'], d[0]['Spec']['Mode']['Replicated']['Replicas']")" = "('$s', 1)" ] &&
  pass "service labels and replicas" || fail "service labels: $(cat "$tmp/body")"
expect 200 "GET /services with the map-of-map filter form" GET "/services?filters=$(enc "{\"label\":{\"com.docker.stack.namespace=$s\":true}}")"
[ "$(j 'len(d)')" = 1 ] && pass "the same one service" || fail "map-of-map form: $(cat "$tmp/body")"
expect 200 "GET /services by name prefix" GET "/services?filters=$(enc "{\"name\":[\"${s}_a\"]}")"
[ "$(j 'len(d)')" = 1 ] && pass "name filter is a prefix" || fail "name prefix: $(cat "$tmp/body")"
expect 200 "GET /services/ID-PREFIX" GET "/services/${sid:0:8}"
[ "$(j "'RestartPolicy' in d['Spec']['TaskTemplate'], d['ID']")" = "(False, '$sid')" ] &&
  pass "inspect without insertDefaults: the raw spec" || fail "inspect raw: $(cat "$tmp/body")"
expect 200 "GET /v1.41/services/NAME?insertDefaults=true" GET "/v1.41/services/${s}_app?insertDefaults=true"
[ "$(j "d['Spec']['TaskTemplate']['RestartPolicy'], d['Spec']['TaskTemplate']['ContainerSpec']['StopGracePeriod']")" = "({'Condition': 'any', 'Delay': 5000000000, 'MaxAttempts': 0}, 10000000000)" ] &&
  pass "insertDefaults=true: the daemon's RestartPolicy and StopGracePeriod" || fail "inserted defaults: $(cat "$tmp/body")"
cp "$tmp/body" "$tmp/svc-defaults.json"
docker service inspect "${s}_app" >"$tmp/cli-svc.json"
python3 - "$tmp/svc-defaults.json" "$tmp/cli-svc.json" <<'PY' && pass "insertDefaults=true is the CLI's service inspect (less the CLI's NoNewPrivileges)" || fail "API and CLI templates differ"
import json, sys
api = json.load(open(sys.argv[1]))["Spec"]["TaskTemplate"]
cli = json.load(open(sys.argv[2]))[0]["Spec"]["TaskTemplate"]
cli["ContainerSpec"]["Privileges"].pop("NoNewPrivileges")
assert api == cli, (api, cli)
PY
expect 404 "GET /services/nosuch" GET /services/nosuch
message_is "service nosuch not found" && pass "says service nosuch not found" || fail "missing service: $(cat "$tmp/body")"

echo "== tasks"
expect 200 "GET /tasks by service id" GET "/tasks?filters=$(enc "{\"service\":[\"$sid\"]}")"
[ "$(j 'len(d), d[0]["ServiceID"], "Runtime" in d[0]["Spec"], "RestartPolicy" in d[0]["Spec"]')" = "(1, '$sid', False, False)" ] &&
  pass "one task of the service; its spec has no Runtime, no RestartPolicy" || fail "tasks: $(cat "$tmp/body")"
tid="$(j 'd[0]["ID"]')"
expect 200 "GET /tasks/ID" GET "/tasks/$tid"
cp "$tmp/body" "$tmp/task.json"
docker inspect --type task "$tid" >"$tmp/cli-task.json"
python3 - "$tmp/task.json" "$tmp/cli-task.json" <<'PY' && pass "the task is what docker inspect --type task prints" || fail "API and CLI tasks differ"
import json, sys
api = json.load(open(sys.argv[1]))
cli = json.load(open(sys.argv[2]))[0]
for k in ("ID", "Spec", "ServiceID", "DesiredState", "NodeID"):
    assert api[k] == cli[k], k
assert api["Status"]["State"] == cli["Status"]["State"]
PY
expect 200 "GET /tasks with desired-state=shutdown" GET "/tasks?filters=$(enc "{\"service\":[\"${s}_app\"],\"desired-state\":[\"shutdown\"]}")"
[ "$(j 'len(d)')" = 0 ] && pass "no shut-down task yet" || fail "desired-state: $(cat "$tmp/body")"
expect 404 "GET /tasks of a missing service" GET "/tasks?filters=$(enc '{"service":["nosuch"]}')"
message_is "service nosuch not found" && pass "says service nosuch not found" || fail "tasks of missing service: $(cat "$tmp/body")"
expect 404 "GET /tasks/nosuch" GET /tasks/nosuch

echo "== containers"
expect 200 "GET /containers/json by stack label" GET "/containers/json?$(stack_q $s)"
[ "$(j 'len(d)')" = 1 ] && [[ "$(j 'd[0]["Id"]')" =~ ^[0-9a-f]{64}$ ]] &&
  [ "$(j 'd[0]["State"], d[0]["Names"][0][0], d[0]["Labels"]["com.docker.swarm.task.id"]')" = "('running', '/', '$tid')" ] &&
  pass "the task's container: full id, /name, running, task labels" || fail "stack containers: $(cat "$tmp/body")"
[ "$(j 'd[0]["Id"][:12]')" = "$(docker ps -q --filter "label=com.docker.stack.namespace=$s")" ] &&
  pass "the same container docker ps lists" || fail "API and CLI ps differ"
cid="$(docker run -d --label cc-ci.run=RUN1 --name ccci-e1 alpine:3.19 sleep 600)"
[[ "$cid" =~ ^[0-9a-f]{64}$ ]] && pass "docker run -d (CLI stand-in)" || fail "docker run: $cid"
expect 200 "GET /containers/json?all=1 by label cc-ci.run=RUN1" GET "/containers/json?all=1&$(label_q cc-ci.run=RUN1)"
[ "$(j '[(c["Id"], c["Names"], c["Image"], c["Labels"]) for c in d]')" = "[('$cid', ['/ccci-e1'], 'alpine:3.19', {'cc-ci.run': 'RUN1'})]" ] &&
  pass "the CLI's container is in the API's list" || fail "run container listing: $(cat "$tmp/body")"
expect 200 "GET /containers/NAME/json" GET /containers/ccci-e1/json
[ "$(j 'd["Id"], d["Name"], d["State"]["Status"]')" = "('$cid', '/ccci-e1', 'running')" ] &&
  pass "container inspect" || fail "container inspect: $(cat "$tmp/body")"
cid2="$(docker run -d --label cc-ci.run=RUN1 alpine:3.19 sleep 600)"
expect 409 "DELETE of a running container without force" DELETE "/containers/$cid2"
expect 204 "DELETE ?force=true" DELETE "/containers/$cid2?force=true&v=true"
expect 204 "DELETE ?force=1 of the docker run container" DELETE "/containers/${cid:0:12}?force=1"
[ ! -s "$tmp/body" ] && ! grep -qi '^Content-Length' "$tmp/headers" &&
  pass "204 without a body" || fail "204 response: $(cat "$tmp/headers")"
expect 404 "GET /containers/ID/json after removal" GET "/containers/$cid/json"
message_is "No such container: $cid" && pass "says No such container: ID" || fail "missing container: $(cat "$tmp/body")"
expect 404 "DELETE again" DELETE "/containers/$cid?force=1"
[ -z "$(docker ps -aq --filter label=cc-ci.run=RUN1)" ] && pass "docker ps (CLI) sees them gone" || fail "still listed by the CLI"

echo "== knobs from the caller's environment"
expect 500 "CCCI_FAKE_ABRA_FAIL=docker-ps in curl's environment" CCCI_FAKE_ABRA_FAIL=docker-ps CCCI_RUN_ID=r-fail GET /containers/json
message_is "Error: docker-ps failed (injected by CCCI_FAKE_ABRA_FAIL=docker-ps)" &&
  pass "the CLI's message" || fail "injected message: $(cat "$tmp/body")"
expect 200 "the same request without it" GET /containers/json
python3 - "$CCCI_FAKE_STATE/calls.log" <<'PY' && pass "calls.log: prog engine, the caller's pid and run id, argv [engine, GET, path]" || fail "call log: $(tail -3 "$CCCI_FAKE_STATE/calls.log")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
hit = [l for l in lines if l["prog"] == "engine" and l["step"] == "docker-ps"]
assert len(hit) == 1, hit
l = hit[0]
assert l["result"] == "fail" and l["run_id"] == "r-fail", l
assert l["argv"] == ["engine", "GET", "/containers/json"], l
assert l["pid"] != 0 and str(l["pid"]) != open("/proc/self/stat").read().split()[3], l
PY
expect 500 "docker-ps@cc-ci.run=RUN1 fails the listing of that label" "CCCI_FAKE_ABRA_FAIL=docker-ps@cc-ci.run=RUN1" GET "/containers/json?$(label_q cc-ci.run=RUN1)"
expect 200 "... and not the listing of the stack" "CCCI_FAKE_ABRA_FAIL=docker-ps@cc-ci.run=RUN1" GET "/containers/json?$(stack_q $s)"
expect 500 "FAIL=docker-service-ls" CCCI_FAKE_ABRA_FAIL=docker-service-ls GET /v1.41/services
expect 500 "FAIL=pull: an error status before any stream" CCCI_FAKE_ABRA_FAIL=pull POST "/images/create?fromImage=alpine&tag=3.18"
[[ "$(j 'd["message"]')" == *"registry-1.docker.io"* ]] && ! grep -qi 'chunked' "$tmp/headers" &&
  pass "the registry error as a JSON message" || fail "pull failure: $(cat "$tmp/headers" "$tmp/body")"
export CCCI_FAKE_LOG_READS=1 # this script's own curls: logged reads
expect 200 "LOG_READS=1 in the caller's environment" GET /secrets
unset CCCI_FAKE_LOG_READS
grep -q '"argv": \["engine", "GET", "/secrets"\].*"result": "ok".*"step": "docker-secret-ls"' "$CCCI_FAKE_STATE/calls.log" &&
  pass "a logged read" || fail "no logged read: $(tail -2 "$CCCI_FAKE_STATE/calls.log")"
# A hang: the handler sleeps for ever; curl gives up after 1 s; a ping
# answers meanwhile.
t0=$SECONDS
env CCCI_FAKE_ABRA_HANG=docker-service-ls curl -sS --max-time 1 -o /dev/null \
  --unix-socket "$sock" http://engine/services 2>/dev/null &
hp=$!
pids+=("$hp")
wait_for 5 test -e "$CCCI_FAKE_STATE/hang/docker-service-ls.$main_pid" &&
  pass "hang marker hang/docker-service-ls.ENGINE_PID" || fail "no hang marker: $(ls "$CCCI_FAKE_STATE/hang" 2>&1)"
expect 200 "a ping answers while a handler hangs" GET /_ping --max-time 1
expect 200 "so does a listing" GET "/services?$(stack_q $s)" --max-time 1
wait "$hp"
rc=$?
[ "$rc" = 28 ] && pass "the hanging request never answers (curl times out)" || fail "hanging curl exit $rc after $((SECONDS - t0)) s"
[ "$(grep -c '"result": "hang".*"step": "docker-service-ls"' "$CCCI_FAKE_STATE/calls.log")" = 1 ] &&
  pass "one hang line in the call log" || fail "hang lines: $(grep -c hang "$CCCI_FAKE_STATE/calls.log")"
expect 200 "the engine serves on" GET /version

echo "== networks, volumes, secrets"
expect 200 "GET /networks" GET /networks
[ "$(j 'sorted(n["Name"] for n in d if not n["Labels"])')" = "['bridge', 'docker_gwbridge', 'host', 'ingress', 'none']" ] &&
  pass "the built-in networks" || fail "builtin networks: $(j '[n["Name"] for n in d]')"
expect 200 "GET /networks by stack label" GET "/networks?$(stack_q $s)"
[ "$(j '[(n["Name"], n["Driver"], n["Scope"]) for n in d]')" = "[('${s}_default', 'overlay', 'swarm')]" ] &&
  pass "the stack's network" || fail "stack network: $(cat "$tmp/body")"
expect 200 "GET /networks/NAME" GET "/networks/${s}_default"
expect 404 "GET /networks/nosuch" GET /networks/nosuch
message_is "network nosuch not found" && pass "says network nosuch not found" || fail "missing network: $(cat "$tmp/body")"
expect 403 "DELETE /networks/bridge (pre-defined)" DELETE /networks/bridge
expect 404 "DELETE /networks/nosuch" DELETE /networks/nosuch
expect 200 "GET /volumes by stack label" GET "/volumes?$(stack_q $s)"
[ "$(j '[(v["Name"], v["Driver"], v["Scope"]) for v in d["Volumes"]], d["Warnings"]')" = "([('${s}_data', 'local', 'local')], None)" ] &&
  [ -d "$(j 'd["Volumes"][0]["Mountpoint"]')" ] &&
  pass "the stack's volume, its Mountpoint a directory" || fail "volumes: $(cat "$tmp/body")"
expect 200 "GET /secrets by name prefix" GET "/secrets?filters=$(enc "{\"name\":[\"${s}_\"]}")"
[ "$(j '[x["Spec"]["Name"] for x in d], d[0]["Version"]["Index"] > 0, "Data" in d[0]["Spec"]')" = "(['${s}_api_key_v1'], True, False)" ] &&
  pass "the app's secret, no data" || fail "secrets: $(cat "$tmp/body")"

echo "== images"
expect 200 "POST /images/create?fromImage=alpine&tag=3.19" POST "/v1.41/images/create?fromImage=alpine&tag=3.19"
grep -qi '^Transfer-Encoding: chunked' "$tmp/headers" && [ "$(tail -1 "$tmp/body")" = '{"status":"Status: Downloaded newer image for alpine:3.19"}' ] &&
  python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$tmp/body" &&
  pass "a chunked stream of JSON lines" || fail "pull stream: $(cat "$tmp/headers" "$tmp/body")"
expect 200 "GET /images/alpine:3.19/json" GET /images/alpine:3.19/json
[[ "$(j 'd["Id"]')" =~ ^sha256:[0-9a-f]{64}$ ]] && [ "$(j 'd["RepoTags"]')" = "['alpine:3.19']" ] &&
  pass "image Id and RepoTags" || fail "image: $(cat "$tmp/body")"
check "docker image inspect (CLI) sees the pull" docker image inspect alpine:3.19
expect 200 "pull a name with a registry port and path" POST "/images/create?fromImage=$(enc registry.example:5000/team/app)&tag=1.0"
expect 200 "GET /images/registry.example:5000/team/app:1.0/json" GET /images/registry.example:5000/team/app:1.0/json
expect 200 "the same name percent-encoded (slashes too)" GET "/images/$(enc registry.example:5000/team/app:1.0)/json"
expect 404 "GET /images/of/nosuch:1/json" GET /images/of/nosuch:1/json
message_is "No such image: of/nosuch:1" && pass "says No such image: of/nosuch:1" || fail "missing image: $(cat "$tmp/body")"

echo "== undeploy: the list race, a network in use"
export CCCI_FAKE_ABRA_LINGER_MS=5000 # the checks below run inside this window
check "abra app undeploy leaving its network (fails, as docker stack rm)" \
  sh -c '! env CCCI_FAKE_UNDEPLOY_LEAVES=network abra app undeploy "$1" -n' _ $d
expect 404 "PS_RACE=1: the first listing while containers linger fails" CCCI_FAKE_DOCKER_PS_RACE=1 GET "/containers/json?all=1"
[[ "$(j 'd["message"]')" == "No such container: "* ]] && pass "says No such container" || fail "race: $(cat "$tmp/body")"
expect 200 "... once" CCCI_FAKE_DOCKER_PS_RACE=1 GET "/containers/json?all=1"
expect 400 "NETWORK_IN_USE=1: the first removal of the left network fails" CCCI_FAKE_DOCKER_NETWORK_IN_USE=1 DELETE "/networks/${s}_default"
[[ "$(j 'd["message"]')" == *"network "*" is in use by task "* ]] && pass "says is in use by task" || fail "in use: $(cat "$tmp/body")"
expect 204 "... the next one removes it" CCCI_FAKE_DOCKER_NETWORK_IN_USE=1 DELETE "/networks/${s}_default"
expect 404 "... gone" GET "/networks/${s}_default"

echo "== exits"
[ ! -s "$tmp/engine.err" ] && pass "nothing on the engine's stderr" || fail "engine stderr: $(head -5 "$tmp/engine.err")"
rm -rf "$CCCI_FAKE_STATE"
wait_for 5 gone "$main_pid" && pass "exits when its state directory is removed" || fail "still running without its state"
[ ! -e "$sock" ] && pass "... and removes its socket" || fail "socket left: $sock"
[ ! -e "$CCCI_FAKE_STATE" ] && pass "... and does not bring the state back" || fail "state directory recreated"
export CCCI_FAKE_STATE="$tmp/state2"
sock2="$tmp/e2.sock"
start_engine "$sock2" "$tmp/e2.err" && pass "a second engine" || fail "second engine did not start"
e2=$epid
kill -TERM "$e2"
wait_for 5 gone "$e2" && pass "exits on SIGTERM" || fail "still running after SIGTERM"
wait "$e2"
rc=$?
[ "$rc" = 0 ] && pass "... with status 0" || fail "exit status $rc after SIGTERM"
[ ! -e "$sock2" ] && pass "... and removes its socket" || fail "socket left: $sock2"
# parent death: the engine's parent (a shell that becomes `sleep`) is killed
sock3="$tmp/e3.sock"
bash -c '"$1" --socket "$2" 2>/dev/null & echo $! >"$3"; exec sleep 60' _ "$here/engine" "$sock3" "$tmp/e3.pid" &
parent=$!
pids+=("$parent")
if wait_for 10 test -S "$sock3"; then
  e3="$(cat "$tmp/e3.pid")"
  pids+=("$e3")
  kill -KILL "$parent"
  { wait "$parent"; } 2>/dev/null # no "Killed" job notice
  wait_for 5 gone "$e3" && pass "exits when its parent dies" || fail "outlived its parent"
  [ ! -e "$sock3" ] && pass "... and removes its socket" || fail "socket left: $sock3"
else fail "third engine did not start"; fi

echo
if [ "$failures" -ne 0 ]; then
  echo "selftest-engine: $failures check(s) FAILED"
  exit 1
fi
echo "selftest-engine: all checks passed"
