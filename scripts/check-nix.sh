#!/usr/bin/env bash
# Parses every .nix file under DIR (default: the repository) with
# `nix-instantiate --parse`: syntax errors and unbound variables fail, no
# network and no store are needed (CI cannot fetch nixpkgs, so this is as
# far as it can prove the Nix files without building them).
#
# Usage: check-nix.sh [DIR]
# Exit: 0 all parse; 1 a file does not parse, or there is none; 2 no nix-instantiate.
set -euo pipefail
root="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
if ! command -v nix-instantiate >/dev/null 2>&1; then
  echo "check-nix: nix-instantiate not found (Debian: apt-get install -y nix-bin)" >&2
  exit 2
fi
mapfile -t files < <(find "$root" \( -name target -o -name .git \) -prune -o -name '*.nix' -type f -print | sort)
if [ "${#files[@]}" -eq 0 ]; then
  echo "check-nix: no .nix file under $root" >&2
  exit 1
fi
failed=0
for f in "${files[@]}"; do
  if err=$(nix-instantiate --parse "$f" 2>&1 >/dev/null); then
    echo "ok    ${f#"$root"/}"
  else
    echo "FAIL  ${f#"$root"/}"
    printf '%s\n' "$err" | sed 's/^/      /'
    failed=1
  fi
done
exit "$failed"
