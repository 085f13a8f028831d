#!/usr/bin/env bash
# Form `no-backup` (README.md): the backup label is not enabled.
set -euo pipefail
w="$1"
sed -i 's/^#ENABLE_BACKUPS=true$/ENABLE_BACKUPS=false/' "$w/.env.sample"
grep -q '^ENABLE_BACKUPS=false$' "$w/.env.sample"
