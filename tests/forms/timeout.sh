#!/usr/bin/env bash
# Form `timeout` (README.md): an interpolated timeout label.
set -euo pipefail
w="$1"
# shellcheck disable=SC2016 # the ${...} are compose text, not shell
sed -i 's/coop-cloud\.\${STACK_NAME}\.timeout=120/coop-cloud.${STACK_NAME}.timeout=${TIMEOUT:-240}/' "$w/compose.yml"
printf '\n## How long abra waits for a deploy (seconds)\nTIMEOUT=90\n' >>"$w/.env.sample"
grep -q 'TIMEOUT:-240' "$w/compose.yml"
