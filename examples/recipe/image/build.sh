#!/usr/bin/env bash
# Builds the example recipe's image ccci-example:VERSION from the files next
# to this script: server.c compiled static (gcc -static -O2, VERSION
# compiled in) into a FROM-scratch image. Nothing is pulled.
#
# Usage: build.sh [--force] VERSION
#   An image that exists with the same source hash (label
#   ccci.example.source) is kept as it is unless --force.
# Environment: CCCI_DOCKER (default docker), CC (default gcc).
set -euo pipefail

force=0
if [ "${1:-}" = --force ]; then
  force=1
  shift
fi
if [ $# -ne 1 ] || ! [[ "$1" =~ ^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$ ]]; then
  echo "usage: build.sh [--force] VERSION (a docker tag: letters, digits, . _ -)" >&2
  exit 2
fi
version="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
docker="${CCCI_DOCKER:-docker}"
cc="${CC:-gcc}"
image="ccci-example:$version"

# What the image is made of; the hash decides whether a rebuild is needed.
source_hash="$(cat "$here/server.c" "$here/Dockerfile" "$here/build.sh" | sha256sum | cut -c1-16)"
if [ "$force" -eq 0 ]; then
  have="$("$docker" image inspect --format '{{index .Config.Labels "ccci.example.source"}}' "$image" 2>/dev/null || true)"
  if [ "$have" = "$source_hash" ]; then
    echo "$image is up to date (source $source_hash)"
    exit 0
  fi
fi

old_id="$("$docker" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
ctx="$(mktemp -d "${TMPDIR:-/tmp}/ccci-example-image.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
"$cc" -static -O2 -Wall -Wextra -o "$ctx/server" "-DVERSION=\"$version\"" "$here/server.c"
cp "$here/Dockerfile" "$ctx/Dockerfile"
# The legacy builder pulls nothing for FROM scratch and needs no buildx
# plugin (BuildKit does); its deprecation notice is shown only on failure.
if ! DOCKER_BUILDKIT=0 "$docker" build -q \
  --label "ccci.example.version=$version" \
  --label "ccci.example.source=$source_hash" \
  -t "$image" "$ctx" >"$ctx/build.log" 2>&1; then
  cat "$ctx/build.log" >&2
  echo "build.sh: docker build of $image failed" >&2
  exit 1
fi
# The image this one replaced is left untagged: remove it (quietly kept if
# a container still uses it).
new_id="$("$docker" image inspect --format '{{.Id}}' "$image")"
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  "$docker" image rm "$old_id" >/dev/null 2>&1 || true
fi
echo "$image built (source $source_hash)"
