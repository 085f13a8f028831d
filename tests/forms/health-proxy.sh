#!/usr/bin/env bash
# Form `health-proxy` (README.md): a healthcheck with start_period and the
# external `proxy` network.
set -euo pipefail
w="$1"
python3 - "$w/compose.yml" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
s = s.replace("    secrets:\n      - api_key\n", '''    secrets:
      - api_key
    networks:
      - proxy
      - internal
    healthcheck:
      test: ["CMD", "/server", "--version"]
      interval: 5s
      timeout: 3s
      retries: 3
      start_period: 15s
''', 1)
s += '''
networks:
  proxy:
    external: true
  internal:
'''
open(p, "w").write(s)
PY
grep -q 'start_period' "$w/compose.yml"
