#!/usr/bin/env bash
# Benchmarks of SPEC section 8. Usage: scripts/bench.sh [all|exec|lock|tree|cancel|janitor|testrun|views|swarm|swarmlock]
# CCCI_BENCH_BEFORE=OLD_BINARY measures an older build beside this one (see pair).
# Each figure is one line,
#   name: value (ratio ...)
# measured side by side with its baseline in the same run. Each area is a
# function (bench_lock, ...) called from main; figures are medians, so a
# noisy neighbour on a shared machine moves them less than a mean. The
# Python helpers are their own files (scripts/bench_*.py), linted by lint.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# CCCI_BENCH_BIN measures another build (an older binary, side by side with
# this one in the same session) instead of building this checkout.
BIN="${CCCI_BENCH_BIN:-$PWD/target/release/cc-ci-run}"
# The older binary is this script's to use, not cc-ci-run's to read: kept
# out of the measured processes' environment (cc-ci-run warns about every
# CCCI_ variable it does not know).
export -n CCCI_BENCH_BEFORE CCCI_BENCH_BEFORE_CKPT
WORK=""
# The app domains whose swarm lock objects bench_swarmlock may leave behind
# if it is interrupted: removed on exit (only these, never another lock).
SWARMLOCK_DOMAINS=""

setup() {
	if [ -z "${CCCI_BENCH_BIN:-}" ]; then cargo build --release --quiet; fi
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/ccci-bench.XXXXXX")
	trap cleanup EXIT
	# Ctrl-C or a TERM ends the script through `exit`, so the EXIT trap runs.
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

cleanup() {
	swarmlock_cleanup
	rm -rf "$WORK"
}

# Wall-clock microseconds, without forking (`date` would cost a process).
now_us() {
	local t=$EPOCHREALTIME
	REPLY=${t/./}
}

# Median wall-clock ns of a whole command over N runs: median_ns N CMD...
median_ns() {
	local n=$1
	shift
	local samples=() t0 i
	for ((i = 0; i < n; i++)); do
		now_us
		t0=$REPLY
		"$@" >/dev/null
		now_us
		samples+=($(((REPLY - t0) * 1000)))
	done
	printf '%s\n' "${samples[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# A duration in ns, printed for humans (us below 1 ms, else ms).
human_ns() {
	awk -v ns="$1" 'BEGIN { if (ns < 1000000) printf "%.1f us", ns / 1000; else printf "%.2f ms", ns / 1000000 }'
}

ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'
}

# SPEC 4 and 8: acquire + release of an uncontended app lock must cost well
# under 1 ms. In process: open, flock, inode re-check, owner record, clear,
# close (what a run pays). The whole-process figures compare cc-ci-run with
# util-linux `flock FILE true` on equal terms (a process start included).
bench_lock() {
	local state="$WORK/lock-state" budget_ns=1000000 n_in=20000 n_proc=300
	local in_ns flock_ns proc_ns
	mkdir -p "$state/locks/apps"
	in_ns=$("$BIN" --state-dir "$state" __bench-lock "$n_in")
	flock_ns=$(median_ns "$n_proc" flock "$state/locks/apps/bench-flock.lock" true)
	proc_ns=$(median_ns "$n_proc" "$BIN" --state-dir "$state" __bench-lock 1)
	echo "lock acquire+release, in process (median of $n_in): $(human_ns "$in_ns") (ratio $(ratio "$in_ns" "$budget_ns") of the 1 ms budget, $(ratio "$in_ns" "$flock_ns") of flock(1) FILE true)"
	echo "lock acquire+release, cc-ci-run process (median of $n_proc): $(human_ns "$proc_ns") (ratio $(ratio "$proc_ns" "$flock_ns") of flock(1) FILE true, $(ratio "$proc_ns" "$budget_ns") of the 1 ms budget)"
	echo "lock baseline flock(1) FILE true, whole process (median of $n_proc): $(human_ns "$flock_ns") (ratio $(ratio "$flock_ns" "$budget_ns") of the 1 ms budget)"
}

# The stand-ins' environment for benches that run `cc-ci-run run`/`janitor`.
fake_env() {
	export PATH="$PWD/tests/fake:/usr/local/bin:/usr/bin:/bin:$PATH"
	export CCCI_FAKE_STATE="$1/fake" CCCI_STATE_DIR="$1/state" CCCI_ABRA_HOME="$2"
	export CCCI_CI_TESTS="$1/none"
	# The stand-in swarm serves nothing: the floor would only wait its bound.
	export CCCI_FLOOR=off
	mkdir -p "$1/fake" "$1/state"
	# cc-ci-run asks the engine's API: the stand-in engine answers from the
	# same stand-in swarm (an older binary called the stand-in docker CLI on
	# PATH instead). It gets its state as an argument, not the environment,
	# so the benches' "no stand-in process left" checks do not wait for it;
	# it ends with the subshell that called this.
	env -u CCCI_FAKE_STATE tests/fake/engine --socket "$1/engine.sock" --state "$1/fake" &
	FAKE_ENGINE=$!
	trap 'kill "$FAKE_ENGINE" 2>/dev/null; wait "$FAKE_ENGINE" 2>/dev/null || true' EXIT
	local i
	for ((i = 0; i < 200; i++)); do
		[ -S "$1/engine.sock" ] && break
		sleep 0.05
	done
	export DOCKER_HOST="unix://$1/engine.sock"
}

# SPEC 3 step 3 and 8: the per-run tree made by cc-ci-run's own code
# (`__run-tree`: the run's fetch step, from the canonical checkout and its
# local upstream to the ref under test checked out and its tags read),
# against a full copy (`cp -a`) of the canonical checkout, at a small and a
# large recipe history. The tree must not grow with history. An older
# binary without `__run-tree` says so, and the git commands such a binary
# runs for the step (clone --shared, fetch, checkout) are timed in its place.
bench_tree() {
	local n=21 i h how
	bash scripts/make-example-recipe.sh "$WORK/tree-small" >/dev/null
	bash scripts/make-example-recipe.sh --history 3000 --blob-mb 16 "$WORK/tree-large" >/dev/null
	declare -A tree copy size
	for h in small large; do
		size[$h]=$(du -sk "$WORK/tree-$h/abra-home/recipes/example/.git" | cut -f1)
		tree[$h]="" copy[$h]=""
	done
	if "$BIN" __run-tree --help >/dev/null 2>&1; then
		how="cc-ci-run __run-tree"
	else
		how="git clone --shared + fetch + checkout (the binary has no __run-tree)"
		echo "run tree setup: $BIN has no __run-tree command; timing the git commands it runs instead"
	fi
	# Interleaved (small, large, small, ...) so load drift falls on both;
	# one warm-up round first, so neither pays for a cold page cache.
	for ((i = -1; i < n; i++)); do
		for h in small large; do
			local canon="$WORK/tree-$h/abra-home/recipes/example" t0 t1 t2
			mkdir -p "$WORK/t-$h"
			now_us
			t0=$REPLY
			if [ "${how%% *}" = cc-ci-run ]; then
				"$BIN" __run-tree --canonical "$canon" --dest "$WORK/t-$h/x" >/dev/null 2>&1
			else
				git clone --quiet --shared --no-checkout "$canon" "$WORK/t-$h/x" &&
					git -C "$WORK/t-$h/x" fetch --quiet --tags -- "$WORK/tree-$h/upstream.git" '+refs/heads/*:refs/remotes/upstream/*' &&
					git -C "$WORK/t-$h/x" checkout --quiet --force --detach refs/remotes/upstream/main
			fi
			now_us
			t1=$REPLY
			cp -a "$canon" "$WORK/c-$h"
			now_us
			t2=$REPLY
			rm -rf "$WORK/t-$h" "$WORK/c-$h"
			if ((i >= 0)); then
				tree[$h]+="$(((t1 - t0) * 1000)) "
				copy[$h]+="$(((t2 - t1) * 1000)) "
			fi
		done
	done
	med() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
	local ts tl ps pl
	ts=$(med <<<"${tree[small]}") tl=$(med <<<"${tree[large]}")
	ps=$(med <<<"${copy[small]}") pl=$(med <<<"${copy[large]}")
	echo "run tree setup, small history (${size[small]} KiB .git, median of $n): $how $(human_ns "$ts"), full copy $(human_ns "$ps") (ratio $(ratio "$ts" "$ps"))"
	echo "run tree setup, large history (${size[large]} KiB .git, median of $n): $how $(human_ns "$tl"), full copy $(human_ns "$pl") (ratio $(ratio "$tl" "$pl"))"
	echo "run tree setup growth, large/small history: run tree $(ratio "$tl" "$ts") (flat is 1.0), full copy $(ratio "$pl" "$ps")"
	bench_fetch_phase
}

# SPEC 3 step 3: the whole fetch phase of a `--quick --pr 1` run of a local
# canonical recipe (its origin a bare repository on this host), read from
# the run record's phases: the per-run ABRA_DIR, the run tree, the pull
# request's head checked out, its tags, its tests staged and its settings
# read. Any binary has it. The stand-ins play abra; git is the real one
# (the stand-in git is a bash wrapper that would be timed too), and the
# engine is a socket nobody serves, so the run stops at its first engine
# call, after the fetch phase, and touches no engine.
bench_fetch_phase() {
	local n=9 i real_git ms=()
	real_git=$(command -v git)
	bash scripts/make-example-recipe.sh "$WORK/fetch-recipe" >/dev/null
	for ((i = -1; i < n; i++)); do
		local dir="$WORK/fetch-$i"
		(
			fake_env "$dir" "$WORK/fetch-recipe/abra-home"
			CCCI_RUN_ID="fetch-$i" CCCI_JANITOR=off CCCI_GIT="$real_git" \
				DOCKER_HOST="unix://$dir/no-engine.sock" \
				"$BIN" run --recipe example --pr 1 --quick >/dev/null 2>&1 || true
		)
		if ((i >= 0)); then
			ms+=("$(python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
print(next(p["duration_ms"] for p in r["phases"] if p["name"] == "fetch"))' "$dir/state/runs/fetch-$i/run.json")")
		fi
	done
	local med_ms
	med_ms=$(printf '%s\n' "${ms[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
	echo "fetch phase of a --quick --pr 1 run, local canonical recipe (median of $n, run record): ${med_ms} ms (ratio $(ratio "$med_ms" 100) of the 100 ms goal; samples ${ms[*]} ms)"
}

# SPEC 8: cancel latency. A Drone step (`/bin/sh -e SCRIPT` calling `run`)
# is SIGKILLed while its tests run; measured from the kill to the run log's
# "phase: teardown" line, and to the last process of the run gone.
bench_cancel() {
	local n=5 i to_td=() to_gone=()
	bash scripts/make-example-recipe.sh "$WORK/cancel-recipe" >/dev/null
	for ((i = 0; i < n; i++)); do
		local dir="$WORK/cancel-$i"
		(
			fake_env "$dir" "$WORK/cancel-recipe/abra-home"
			export CCCI_RUN_ID="cancel-$i" CCCI_EXAMPLE_HANG=install CCCI_EXAMPLE_READY_DIR="$dir" CCCI_JANITOR=off
			echo "'$BIN' run --recipe example --pr 1 --quick" >"$dir.sh"
			/bin/sh -e "$dir.sh" >/dev/null 2>&1 &
			local sh=$!
			while [ ! -e "$dir/test-install" ]; do sleep 0.01; done
			now_us
			local t0=$REPLY
			kill -KILL "$sh"
			wait "$sh" 2>/dev/null || true
			local log="$dir/state/runs/cancel-$i/run.log"
			until grep -q 'phase: teardown' "$log" 2>/dev/null; do sleep 0.002; done
			now_us
			local t1=$REPLY
			until grep -q '"finished": "' "$dir/state/runs/cancel-$i/run.json" 2>/dev/null &&
				! grep -lsa "CCCI_FAKE_STATE=$dir/fake" /proc/[0-9]*/environ >/dev/null 2>&1; do sleep 0.005; done
			now_us
			echo "$(((t1 - t0) * 1000)) $(((REPLY - t0) * 1000))"
		) >"$WORK/cancel-$i.out"
		read -r a b <"$WORK/cancel-$i.out"
		to_td+=("$a")
		to_gone+=("$b")
	done
	local td gone
	td=$(printf '%s\n' "${to_td[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
	gone=$(printf '%s\n' "${to_gone[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
	echo "cancel latency, SIGKILL of the step's sh (median of $n): to teardown start $(human_ns "$td"), to the last process gone (teardown included) $(human_ns "$gone")"
}

# SPEC 5 and 8: a janitor sweep over N candidates, none an orphan (every
# app lock held by a live holder): the cost per candidate must stay flat,
# and probes never wait on a lock.
bench_janitor() {
	bash scripts/make-example-recipe.sh "$WORK/jan-recipe" >/dev/null
	local n per=()
	for n in 10 100 1000; do
		local dir="$WORK/jan-$n" home="$WORK/jan-home-$n"
		cp -a "$WORK/jan-recipe/abra-home" "$home"
		(
			fake_env "$dir" "$home"
			mkdir -p "$dir/state/locks/apps"
			for ((i = 1; i <= n; i++)); do
				# With the ownership marker (SPEC 5): without it an app is
				# left alone unprobed, and the sweep would measure nothing.
				printf '# cc-ci-run: created by run bench-%d on host bench at 2026-01-01T00:00:00Z (the janitor may reap this app once that run is gone)\nTYPE=example:1.0.0+1.0\nDOMAIN=example-b%d.ci.localhost\n' "$i" "$i" >"$home/servers/default/example-b$i.ci.localhost.env"
			done
			# One live holder of every app lock (a run per app, in effect).
			python3 scripts/bench_hold_flocks.py "$dir/state/locks/apps" "$n" "$dir/held" &
			local holder=$!
			while [ ! -e "$dir/held" ]; do sleep 0.01; done
			local ns ls_ns calls
			# shellcheck disable=SC2016 # $0 is expanded by the inner bash (the binary)
			ns=$(median_ns 5 bash -c '"$0" janitor --json 2>/dev/null' "$BIN")
			# Whether the measured binary's sweep starts `abra app ls` (an
			# older one does; this one lists abra's server directory
			# itself): one more sweep, untimed, with the stand-in logging
			# its read-only steps.
			CCCI_FAKE_LOG_READS=1 "$BIN" janitor --json >/dev/null 2>&1
			calls=$(grep '"prog": "abra"' "$dir/fake/calls.log" 2>/dev/null | grep -c '"step": "ls"' || true)
			# `abra app ls` alone: with the stand-in (a Python program) it
			# is most of a sweep that calls it, and not the janitor's cost.
			ls_ns=$(median_ns 5 abra app ls -s default -m)
			kill "$holder"
			echo "$ns $ls_ns $calls"
		) >"$WORK/jan-$n.out"
		local ns ls_ns calls
		read -r ns ls_ns calls <"$WORK/jan-$n.out"
		per+=("$ns")
		if [ "$calls" -gt 0 ] && [ "$ns" -gt "$ls_ns" ]; then
			echo "janitor sweep, $n live candidates, no orphan (median of 5): $(human_ns "$ns"); it starts abra app ls, the stand-in's alone $(human_ns "$ls_ns"), the rest $(human_ns $((ns - ls_ns)))"
		elif [ "$calls" -gt 0 ]; then
			# Two medians of separate samples: on a noisy machine the part
			# can come out above the whole; no difference is printed then.
			echo "janitor sweep, $n live candidates, no orphan (median of 5): $(human_ns "$ns"); it starts abra app ls, the stand-in's alone $(human_ns "$ls_ns") (the rest is within the noise)"
		else
			echo "janitor sweep, $n live candidates, no orphan (median of 5): $(human_ns "$ns"); it starts no abra (lists abra's server directory itself; the stand-in's abra app ls alone would be $(human_ns "$ls_ns"))"
		fi
	done
	# The marginal cost of a candidate (listing apps is a fixed cost): from
	# 10 to 100 and from 100 to 1000 candidates. Linear growth keeps it flat.
	local m1 m2
	m1=$(((per[1] - per[0]) / 90))
	m2=$(((per[2] - per[1]) / 900))
	echo "janitor marginal cost per candidate: 10->100 $(human_ns "$m1"), 100->1000 $(human_ns "$m2") (ratio $(ratio "$m2" "$m1"); 1.0 is linear)"
}

# The IDs of the swarm lock objects of one app domain (by its label).
swarmlock_objects() {
	timeout 20 "${CCCI_DOCKER:-docker}" config ls -q --filter "label=cc-ci.lock.domain=$1"
}

# Removes whatever lock objects of the bench's domains are left (an
# interrupted bench: a holder killed before its release).
swarmlock_cleanup() {
	local d id
	for d in $SWARMLOCK_DOMAINS; do
		for id in $(swarmlock_objects "$d" 2>/dev/null || true); do
			timeout 20 "${CCCI_DOCKER:-docker}" config rm "$id" >/dev/null 2>&1 || true
		done
	done
}

# SPEC 11: the swarm lock backend (a config object in the swarm's raft store
# is the lock) against the flock backend, side by side in one run:
#  - uncontended acquire + release in process (`__bench-lock`): two docker
#    CLI calls against the engine, against open + flock + close;
#  - hand-over between two contending hosts (two `__hold-lock`s with their
#    own --state-dir and CCCI_HOST_ID on one domain): from the holder's
#    stdin closing (it releases) to the waiter printing `held`. The baseline
#    is the flock hand-over between two holders sharing one state dir (what
#    one host gets). Rounds alternate backends and which host holds. The
#    holder keeps the lock 0.5 s plus a random 0-0.3 s after the waiter says
#    it is waiting, so the waiter is settled in its wait (on `docker events`
#    for the lock object; polling only where the stream fails) and the
#    release falls at a random point of it (what a real waiter sees).
bench_swarmlock() {
	local n_swarm=30 n_flock=2000 rounds=10
	local dom=bench-swarm.ci.localhost hdom=bench-handover.ci.localhost
	local d left swarm_ns flock_ns
	for d in "$dom" "$hdom"; do
		left=$(swarmlock_objects "$d")
		if [ -n "$left" ]; then
			echo "bench swarmlock: lock objects of $d exist already (${left//$'\n'/ }): another bench is running, or one was killed; remove them with docker config rm" >&2
			return 1
		fi
	done
	SWARMLOCK_DOMAINS="$dom $hdom"
	mkdir -p "$WORK/swl-in"
	swarm_ns=$(CCCI_LOCK_BACKEND=swarm CCCI_HOST_ID=bench-a "$BIN" --state-dir "$WORK/swl-in" __bench-lock "$n_swarm" --name "$dom")
	flock_ns=$(CCCI_LOCK_BACKEND=flock CCCI_HOST_ID=bench-a "$BIN" --state-dir "$WORK/swl-in" __bench-lock "$n_flock" --name "$dom")
	echo "swarm lock acquire+release, uncontended, in process: swarm backend $(human_ns "$swarm_ns") (median of $n_swarm), flock backend $(human_ns "$flock_ns") (median of $n_flock) (ratio $(ratio "$swarm_ns" "$flock_ns") swarm/flock)"

	local out sw_ho fl_ho lease renew margin label_lease
	out=$(python3 scripts/bench_swarmlock_handover.py "$BIN" "$WORK/swl-ho" "$hdom" "$rounds")
	read -r sw_ho fl_ho lease renew margin label_lease <<<"$out"
	echo "swarm lock hand-over, holder's release to the waiter's held (median of $rounds): swarm backend, two hosts $(human_ns "$sw_ho"), flock backend, one host's state dir $(human_ns "$fl_ho") (ratio $(ratio "$sw_ho" "$fl_ho") swarm/flock)"
	ms_text() { if (($1 % 1000)); then echo "$1ms"; else echo "$(($1 / 1000))s"; fi; }
	echo "swarm lock lease settings: lease $(ms_text "$lease"), renew every $(ms_text "$renew"), take-over margin $(ms_text "$margin") (ratios $(ratio "$renew" "$lease") and $(ratio "$margin" "$lease") of the lease; the lock object's lease-ms label $label_lease; a dead holder blocks a domain for at most $(ms_text $((lease + margin))))"
	for d in $SWARMLOCK_DOMAINS; do
		left=$(swarmlock_objects "$d")
		if [ -n "$left" ]; then
			echo "bench swarmlock: lock objects of $d left behind after every holder released: ${left//$'\n'/ }" >&2
			return 1
		fi
	done
}

# With CCCI_BENCH_BEFORE (an older binary), an area that measures one
# binary runs twice in a row, the older binary first, each line prefixed
# `old:` or `new:`; the areas that time several binaries in turns (exec,
# views, the floor) take both at once.
pair() {
	if [ -z "${CCCI_BENCH_BEFORE:-}" ]; then
		"$@"
		return
	fi
	local new=$BIN side
	# Each side in a work directory of its own: the areas make their
	# fixtures under fixed names.
	for side in old new; do mkdir -p "$WORK/$side"; done
	(WORK=$WORK/old BIN=$CCCI_BENCH_BEFORE BENCH_SIDE=old "$@") | sed 's/^/old: /'
	(WORK=$WORK/new BIN=$new BENCH_SIDE=new "$@") | sed 's/^/new: /'
}

# The test runner's benches (scripts/bench-testrun.sh). For the older
# binary, its checkpoint bench is CCCI_BENCH_BEFORE_CKPT (default:
# examples/bench_checkpoint beside it, where cargo builds it).
testrun_area() {
	if [ "${BENCH_SIDE:-}" = old ]; then
		env CCCI_BENCH_BIN="$BIN" CCCI_BENCH_CKPT="${CCCI_BENCH_BEFORE_CKPT:-$(dirname "$BIN")/examples/bench_checkpoint}" \
			bash scripts/bench-testrun.sh
	else
		bash scripts/bench-testrun.sh
	fi
}

main() {
	setup
	local only="${1:-all}"
	case "$only" in all | exec) env CCCI_BENCH_BIN="$BIN" ${CCCI_BENCH_BEFORE:+CCCI_BENCH_BASELINE_BIN="$CCCI_BENCH_BEFORE"} bash scripts/bench-exec.sh 40 ;; esac
	case "$only" in all | lock) pair bench_lock ;; esac
	case "$only" in all | tree) pair bench_tree ;; esac
	case "$only" in all | cancel) pair bench_cancel ;; esac
	case "$only" in all | janitor) pair bench_janitor ;; esac
	case "$only" in all | testrun) pair testrun_area ;; esac
	# The operator's views over 10,000 records (CCCI_BENCH_BEFORE: an
	# older binary beside this build).
	case "$only" in all | views) bash scripts/bench-views.sh 10000 ${CCCI_BENCH_BEFORE:+"$CCCI_BENCH_BEFORE"} "$BIN" ;; esac
	# On a real swarm only (SPEC section 10).
	case "$only" in
	all | swarm)
		if [ "$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" = active ]; then
			pair bench_swarm_script
			# The engine's floor; CCCI_BENCH_BEFORE names an older binary
			# to measure side by side with this build.
			bash scripts/bench-floor.sh 3 ${CCCI_BENCH_BEFORE:+"$CCCI_BENCH_BEFORE"} "$BIN" 2>/dev/null | grep -v ' round '
		else
			echo "swarm benchmarks skipped: no active swarm"
		fi
		;;
	esac
	# The swarm lock backend needs an engine that answers as an active swarm.
	case "$only" in
	all | swarmlock)
		if [ "$(timeout 20 "${CCCI_DOCKER:-docker}" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" = active ]; then
			pair bench_swarmlock
		elif [ "$only" = all ]; then
			echo "swarmlock figures skipped: no engine answers as an active swarm"
		else
			echo "bench swarmlock: needs an engine that answers as an active swarm (docker info)" >&2
			exit 2
		fi
		;;
	esac
}

# bench-swarm.sh's figures (a --quick run against a shell script of the
# same abra calls, and the teardown wait) for $BIN.
bench_swarm_script() {
	bash scripts/bench-swarm.sh 3 "$BIN" 2>/dev/null
}

main "$@"
