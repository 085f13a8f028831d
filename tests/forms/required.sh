#!/usr/bin/env bash
# Form `required` (README.md): a required variable the env file lacks.
set -euo pipefail
w="$1"
# shellcheck disable=SC2016 # the ${...} are compose text, not shell
sed -i 's/^      - LETS_ENCRYPT_ENV$/      - LETS_ENCRYPT_ENV\n      - ADMIN_EMAIL=${ADMIN_EMAIL:?set ADMIN_EMAIL in the app env file}/' "$w/compose.yml"
grep -q 'ADMIN_EMAIL:?' "$w/compose.yml"
