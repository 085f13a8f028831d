#!/usr/bin/env bash
# Form `quoted-comment` (README.md): a quoted value followed by a comment.
set -euo pipefail
w="$1"
sed -i 's/^#ENABLE_BACKUPS=true$/ENABLE_BACKUPS="true"  # back up the data volume (backupbot)/' "$w/.env.sample"
# shellcheck disable=SC2016 # the ${...} are compose text, not shell
sed -i 's/backupbot\.backup=\${ENABLE_BACKUPS:-true}/backupbot.backup=${ENABLE_BACKUPS:-false}/' "$w/compose.yml"
grep -q '^ENABLE_BACKUPS="true"  #' "$w/.env.sample"
grep -q 'ENABLE_BACKUPS:-false' "$w/compose.yml"
