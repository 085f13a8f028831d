# shellcheck shell=bash disable=SC2154
# (SC2154: $work and $abra_home are the sourcing script's.)
# The shell baseline of the swarm benchmarks (sourced by bench-swarm.sh and
# bench-floor.sh): what a shell step with abra's habits does for a quick
# run of the example recipe's pull request 1 on domain $1 (a fixed 1 s
# sleep between convergence polls and between teardown polls). Uses the
# caller's $work and $abra_home; $2 names the round's own directories.
shell_run() {
	local d=$1 stack=${1//./_}
	export ABRA_DIR="$work/sh-abra-$2" CCCI_FAKE_STATE="$work/sh-fake-$2"
	mkdir -p "$ABRA_DIR/recipes" "$CCCI_FAKE_STATE"
	ln -s "$abra_home/servers" "$ABRA_DIR/servers"
	git clone -q "$abra_home/recipes/example" "$ABRA_DIR/recipes/example"
	git -C "$ABRA_DIR/recipes/example" fetch -q "$work/recipe/upstream.git" refs/pull/1/head
	git -C "$ABRA_DIR/recipes/example" checkout -q --detach FETCH_HEAD
	abra app new example -s default -D "$d" -S -C -n >/dev/null
	abra app deploy "$d" -C -D -c -n >/dev/null
	until [ "$(docker service ls --filter "label=com.docker.stack.namespace=$stack" --format '{{.Replicas}}')" = 1/1 ]; do sleep 1; done
	for t in "$work/recipe/abra-home/recipes/example/tests"/*.sh; do
		[ -x "$t" ] || continue
		CCCI_APP_DOMAIN=$d CCCI_STACK=$stack CCCI_TIER=install CCCI_SERVER=default "$t" >/dev/null 2>&1 || true
	done
	abra app undeploy "$d" -n >/dev/null
	while [ -n "$(docker ps -aq --filter "label=com.docker.stack.namespace=$stack")" ]; do sleep 1; done
	abra app rm "$d" -f -n >/dev/null
	unset ABRA_DIR
}
