#!/usr/bin/env bash
# Form `container-label` (README.md): backupbot.backup only as a container
# label, beside the deploy labels.
set -euo pipefail
w="$1"
python3 - "$w/compose.yml" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
s = s.replace('        - "backupbot.backup=${ENABLE_BACKUPS:-true}"\n', "")
s = s.replace("    secrets:\n      - api_key\n", '''    secrets:
      - api_key
    labels:
      - "backupbot.backup=true"
      - "org.example.owner=ccci"
''', 1)
open(p, "w").write(s)
PY
grep -q '^    labels:' "$w/compose.yml"
