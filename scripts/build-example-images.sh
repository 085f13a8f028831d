#!/usr/bin/env bash
# Builds the images of every version of the bundled example recipe, as
# scripts/make-example-recipe.sh lays them out: ccci-example:1.0.0 (release
# 1.0.0+1.0), ccci-example:1.1.0 (release 1.1.0+1.0) and
# ccci-example:2.0.0-pr (pull request 1), each with
# examples/recipe/image/build.sh. Idempotent: an image already built from
# the same sources is kept (a few docker calls, well under a second);
# missing ones are built in parallel (seconds: the engine commits layers).
#
# Usage: build-example-images.sh [--force | --rm]
#   --force  rebuild all three
#   --rm     remove them instead (an absent one is no error)
# Environment: CCCI_DOCKER (default docker).
set -euo pipefail

versions=(1.0.0 1.1.0 2.0.0-pr)
build="$(cd "$(dirname "${BASH_SOURCE[0]}")/../examples/recipe/image" && pwd -P)/build.sh"
docker="${CCCI_DOCKER:-docker}"

case "${1:-}" in
"" | --force) ;;
--rm)
  for v in "${versions[@]}"; do
    if "$docker" image inspect "ccci-example:$v" >/dev/null 2>&1; then
      "$docker" image rm "ccci-example:$v" >/dev/null
      echo "ccci-example:$v removed"
    fi
  done
  exit 0
  ;;
*)
  sed -n '/^# Usage:/,/^# Environment/p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac

# In parallel: each build is mostly the engine committing layers.
pids=()
for v in "${versions[@]}"; do
  "$build" ${1:+"$1"} "$v" &
  pids+=("$!")
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
