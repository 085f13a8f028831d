#!/usr/bin/env bash
# Measures the swarm lock backend (SPEC section 11) on the local swarm:
#   1. uncontended acquire + release (median of N, `__bench-lock`);
#   2. hand-over: host A releases (its stdin closes), host B, waiting, says
#      `held` (median of R rounds);
#   3. take-over of a dead holder: host A is SIGKILLed while holding, host B
#      waits; the time from the kill to B's `held`, against lease + margin.
# Usage: scripts/bench-swarmlock.sh [BINARY] [N] [R]
# Lease settings: CCCI_LOCK_LEASE / _RENEW / _MARGIN (default 4s / 2s / 1s).
set -euo pipefail
bin=${1:-target/debug/cc-ci-run}
n=${2:-20}
rounds=${3:-5}
export CCCI_LOCK_BACKEND=swarm
export CCCI_LOCK_LEASE=${CCCI_LOCK_LEASE:-4s} CCCI_LOCK_RENEW=${CCCI_LOCK_RENEW:-2s} CCCI_LOCK_MARGIN=${CCCI_LOCK_MARGIN:-1s}
work=$(mktemp -d)
domain="bench-$$.swarmlock.invalid"
cleanup() {
    docker config ls -q --filter "name=ccci-lock.$domain" | xargs -r docker config rm >/dev/null 2>&1 || true
    rm -rf -- "$work"
}
trap cleanup EXIT
ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

ns=$(CCCI_HOST_ID=bench-a "$bin" --state-dir "$work/a" __bench-lock "$n" --name "$domain")
echo "uncontended acquire+release: median $((ns / 1000000)) ms over $n"

# Waits for a line in a file (the `held` of a __hold-lock), up to 60 s.
wait_line() {
    local f=$1
    for _ in $(seq 1 6000); do
        grep -q '^held' "$f" 2>/dev/null && return 0
        sleep 0.01
    done
    echo "timed out waiting for held in $f" >&2
    return 1
}

handover=()
for _ in $(seq 1 "$rounds"); do
    rm -f "$work"/a.out "$work"/b.out
    mkfifo "$work/a.in"
    CCCI_HOST_ID=bench-a "$bin" --state-dir "$work/a" __hold-lock app "$domain" <"$work/a.in" >"$work/a.out" 2>>"$work/log" &
    apid=$!
    exec 7>"$work/a.in"
    wait_line "$work/a.out"
    CCCI_HOST_ID=bench-b "$bin" --state-dir "$work/b" __hold-lock app "$domain" </dev/null >"$work/b.out" 2>>"$work/log" 7>&- &
    bpid=$!
    # B is waiting once it has said so.
    for _ in $(seq 1 3000); do grep -q 'waiting for' "$work/log" && break; sleep 0.01; done
    : >"$work/log"
    t0=$(ms)
    exec 7>&-
    wait_line "$work/b.out"
    t1=$(ms)
    wait "$apid" "$bpid" || true
    rm -f "$work/a.in"
    handover+=($((t1 - t0)))
done
echo "hand-over: median $(printf '%s\n' "${handover[@]}" | median) ms over $rounds (${handover[*]})"

rm -f "$work"/a.out "$work"/b.out
CCCI_HOST_ID=bench-a "$bin" --state-dir "$work/a" __hold-lock app "$domain" </dev/zero >"$work/a.out" 2>>"$work/log" &
apid=$!
wait_line "$work/a.out"
CCCI_HOST_ID=bench-b "$bin" --state-dir "$work/b" __hold-lock app "$domain" </dev/null >"$work/b.out" 2>>"$work/log" 7>&- &
bpid=$!
sleep 1
t0=$(ms)
kill -KILL "$apid"
# The dead holder's last write, by the engine's clock.
upd=$(docker config inspect "ccci-lock.$domain" --format '{{.UpdatedAt.UnixMilli}}')
wait_line "$work/b.out"
t1=$(ms)
wait "$bpid" || true
echo "take-over of a SIGKILLed holder: $((t1 - t0)) ms after the kill, $((t1 - upd)) ms after its last write (lease + margin = $CCCI_LOCK_LEASE + $CCCI_LOCK_MARGIN)"
