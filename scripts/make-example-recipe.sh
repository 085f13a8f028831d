#!/usr/bin/env bash
# Builds the bundled example recipe (examples/recipe) as git repositories:
#
#   DEST/upstream.git   bare "forge" repository: tags 1.0.0+1.0 and 1.1.0+1.0
#                       on main, and a pull request head (image
#                       ccci-example:2.0.0-pr plus a new test) only at
#                       refs/pull/1/head
#   DEST/abra-home/     a canonical ABRA_DIR: servers/default/, catalogue/,
#                       recipes/example (a clone of upstream.git on main)
#
# The last line printed is DEST/abra-home. Identity, dates and file modes
# are fixed, so every build yields the same commit and tag ids.
#
# Usage: make-example-recipe.sh [--force] [--history N [--blob-mb M]]
#                               [--sample-env KEY=VALUE]... DEST
#   --force       rebuild over an existing build in DEST
#   --history N   N small commits before the first release (large-history
#                 benchmarks)
#   --blob-mb M   M MiB of incompressible data spread over those commits and
#                 removed from the tree by the first release
#   --sample-env KEY=VALUE
#                 every release's .env.sample ends with KEY=VALUE, as in a
#                 recipe that ships that default: `abra app new` copies it
#                 into the app's env file (ENABLE_BACKUPS=false: a recipe
#                 whose apps are not backed up unless the operator says so)
#   --form NAME   every release and the pull request in the recipe form NAME
#                 (tests/forms/NAME.sh rewrites the recipe's files: a form
#                 public recipes take, tests/forms/README.md)
set -euo pipefail

usage() {
  sed -n '/^# Usage:/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

force=0
history=0
blob_mb=0
dest=""
sample_env=()
form=""
while [ $# -gt 0 ]; do
  case "$1" in
  --force) force=1 ;;
  --sample-env)
    [ $# -ge 2 ] || usage
    sample_env+=("$2")
    shift
    ;;
  --sample-env=*) sample_env+=("${1#*=}") ;;
  --form)
    [ $# -ge 2 ] || usage
    form="$2"
    shift
    ;;
  --history)
    [ $# -ge 2 ] || usage
    history="$2"
    shift
    ;;
  --history=*) history="${1#*=}" ;;
  --blob-mb)
    [ $# -ge 2 ] || usage
    blob_mb="$2"
    shift
    ;;
  --blob-mb=*) blob_mb="${1#*=}" ;;
  -h | --help) usage ;;
  -*)
    echo "make-example-recipe: unknown option $1" >&2
    usage
    ;;
  *)
    [ -z "$dest" ] || usage
    dest="$1"
    ;;
  esac
  shift
done
[ -n "$dest" ] || usage
case "$history$blob_mb" in
*[!0-9]*)
  echo "make-example-recipe: --history and --blob-mb take whole numbers" >&2
  exit 2
  ;;
esac
for kv in ${sample_env[@]+"${sample_env[@]}"}; do
  if ! [[ "$kv" =~ ^[A-Za-z_][A-Za-z0-9_]*=[^[:space:]\'\"]*$ ]]; then
    echo "make-example-recipe: --sample-env takes KEY=VALUE (no spaces or quotes), not '$kv'" >&2
    exit 2
  fi
done
forms="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/forms" && pwd -P)"
if [ -n "$form" ] && ! [[ "$form" =~ ^[a-z][a-z-]*$ && -f "$forms/$form.sh" ]]; then
  names=()
  for f in "$forms"/*.sh; do names+=("$(basename "$f" .sh)"); done
  echo "make-example-recipe: --form takes one of: ${names[*]}" >&2
  exit 2
fi
if [ "$blob_mb" -gt 0 ] && [ "$history" -eq 0 ]; then
  echo "make-example-recipe: --blob-mb needs --history N with N >= 1" >&2
  exit 2
fi

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../examples/recipe" && pwd -P)"

if [ -e "$dest" ] && [ ! -d "$dest" ]; then
  echo "make-example-recipe: $dest exists and is not a directory" >&2
  exit 2
fi
if [ -d "$dest" ] && [ -n "$(ls -A "$dest")" ]; then
  if [ "$force" -ne 1 ]; then
    echo "make-example-recipe: $dest is not empty (use --force to rebuild)" >&2
    exit 1
  fi
  # Only what this script makes is removed; anything else in DEST stays.
  rm -rf "$dest/upstream.git" "$dest/abra-home" "$dest/.build"
fi
mkdir -p "$dest"
dest="$(cd "$dest" && pwd -P)"
build="$dest/.build"
work="$build/work"
mkdir -p "$build/home" "$work"

# Nothing from the host's git configuration (signing, hooks, templates,
# default branch) may change the result.
export HOME="$build/home" XDG_CONFIG_HOME="$build/home"
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME="cc-ci-run example" GIT_AUTHOR_EMAIL="example@ccci.invalid"
export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"
export TZ=UTC LC_ALL=C
git_() { git -c init.defaultBranch=main -c core.fileMode=true "$@"; }

epoch=1700000000 # every commit and tag one minute after the previous one
stamp() {
  epoch=$((epoch + 60))
  export GIT_AUTHOR_DATE="$epoch +0000" GIT_COMMITTER_DATE="$epoch +0000"
}

git_ init -q --template= --bare "$dest/upstream.git"
git_ init -q --template= "$work"

if [ "$history" -gt 0 ]; then
  # fast-import writes N commits in one process (seconds for 10^4 commits,
  # where a commit per `git commit` would take minutes).
  python3 - "$history" "$blob_mb" "$epoch" "$GIT_AUTHOR_NAME" \
    "$GIT_AUTHOR_EMAIL" <<'PY' | git_ -C "$work" fast-import --quiet
import hashlib, sys
n, mb, epoch, name, email = (int(sys.argv[1]), int(sys.argv[2]),
                             int(sys.argv[3]), sys.argv[4], sys.argv[5])
out = sys.stdout.buffer
total = mb * 1024 * 1024

def data(b):
    out.write(b"data %d\n" % len(b))
    out.write(b)
    out.write(b"\n")

def noise(i, size):
    # deterministic and incompressible: SHAKE-256 output, 1 MiB at a time
    chunks, k = [], 0
    while size > 0:
        step = min(size, 1 << 20)
        chunks.append(hashlib.shake_256(b"ccci-blob-%d-%d" % (i, k))
                      .digest(step))
        size -= step
        k += 1
    return b"".join(chunks)

for i in range(1, n + 1):
    ts = epoch + 60 * i
    who = ("%s <%s> %d +0000" % (name, email, ts)).encode()
    out.write(b"commit refs/heads/main\nmark :%d\n" % i)
    out.write(b"author " + who + b"\ncommitter " + who + b"\n")
    data(b"history %d\n" % i)
    if i > 1:
        out.write(b"from :%d\n" % (i - 1))
    out.write(b"M 100644 inline history.txt\n")
    data(b"history commit %d of %d\n" % (i, n))
    size = total * i // n - total * (i - 1) // n
    if size:
        out.write(b"M 100644 inline blobs/%06d.bin\n" % i)
        data(noise(i, size))
out.write(b"done\n")
PY
  epoch=$((epoch + 60 * history))
fi

# Release 1.0.0+1.0: exactly the files of examples/recipe. The index starts
# empty, so history.txt and blobs/ of the history commits are dropped here.
cp -R "$src/." "$work/"
if [ -n "$form" ]; then
  bash "$forms/$form.sh" "$work"
fi
if [ ${#sample_env[@]} -gt 0 ]; then
  {
    echo
    echo "## Set by make-example-recipe.sh --sample-env"
    printf '%s\n' "${sample_env[@]}"
  } >>"$work/.env.sample"
fi
find "$work" -path "$work/.git" -prune -o -type f -exec chmod 0644 {} +
chmod 0755 "$work"/tests/*.sh "$work"/image/build.sh
stamp
git_ -C "$work" add -A
git_ -C "$work" commit -q -m "example 1.0.0+1.0"
git_ -C "$work" tag -a "1.0.0+1.0" -m "release 1.0.0+1.0"

# Release 1.1.0+1.0: a new image and version label.
sed -i -e 's/ccci-example:1\.0\.0$/ccci-example:1.1.0/' \
  -e 's/\.version=1\.0\.0+1\.0"/.version=1.1.0+1.0"/' "$work/compose.yml"
grep -q 'ccci-example:1.1.0$' "$work/compose.yml"
stamp
git_ -C "$work" commit -q -a -m "example 1.1.0+1.0"
git_ -C "$work" tag -a "1.1.0+1.0" -m "release 1.1.0+1.0"

# Pull request 1, not on main: a new image and a test that checks it runs.
git_ -C "$work" checkout -q -b pr-1
sed -i -e 's/ccci-example:1\.1\.0$/ccci-example:2.0.0-pr/' "$work/compose.yml"
cat >"$work/tests/30-pr-image.sh" <<'EOF'
#!/bin/sh
# level: system
# tier: upgrade
# timeout: 30s

# Added by pull request 1. The upgraded app runs the pull request's image,
# and when it is a real stack (example_app.py mode) 127.0.0.1:APP_PORT
# serves version 2.0.0-pr.
# Knobs as in 00-deployed.sh (CCCI_EXAMPLE_FAIL, CCCI_EXAMPLE_HANG).
set -eu

. "$(dirname "$0")/knobs.inc"

: "${CCCI_APP_DOMAIN:?CCCI_APP_DOMAIN is not set}"
stack="${CCCI_STACK:-$(printf '%s' "$CCCI_APP_DOMAIN" | tr . _ | cut -c1-45)}"
image=$("${CCCI_DOCKER:-docker}" service inspect "${stack}_app" \
  --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}')
case "$image" in
ccci-example:2.0.0-pr*) echo "${stack}_app runs $image" ;;
*)
  echo "${stack}_app runs $image, want ccci-example:2.0.0-pr" >&2
  exit 1
  ;;
esac

lib="$(dirname "$0")/example_app.py"
mode=$(python3 "$lib" mode)
case "$mode" in
http*) python3 "$lib" serves 2.0.0-pr ;;
*) echo "no HTTP checks: ${mode#none: }" ;;
esac
EOF
chmod 0755 "$work/tests/30-pr-image.sh"
stamp
git_ -C "$work" add -A
git_ -C "$work" commit -q -m "Use the 2.0.0 image (pull request 1)"

git_ -C "$work" push -q "$dest/upstream.git" \
  main:refs/heads/main pr-1:refs/pull/1/head "refs/tags/*:refs/tags/*"
git_ -C "$dest/upstream.git" symbolic-ref HEAD refs/heads/main

abra_home="$dest/abra-home"
mkdir -p "$abra_home/servers/default" "$abra_home/catalogue" "$abra_home/recipes"
git_ clone -q --template= "$dest/upstream.git" "$abra_home/recipes/example"

rm -rf "$build"
echo "$abra_home"
