#!/usr/bin/env bash
# Form `merge-key` (README.md): the deploy section, with the backup label,
# reached through a YAML merge key.
set -euo pipefail
w="$1"
python3 - "$w/compose.yml" <<'PY'
import re, sys
p = sys.argv[1]
s = open(p).read()
m = re.search(r"\n    deploy:\n((?:      .*\n|\n)+)", s)
body = m.group(1)
s = s[:m.start()] + "\n    deploy:\n      <<: *deploy\n" + s[m.end():]
anchor = "x-deploy: &deploy\n" + re.sub(r"(?m)^      ", "  ", body)
s = s.replace("\nservices:\n", "\n" + anchor + "\nservices:\n", 1)
open(p, "w").write(s)
PY
grep -q '<<: \*deploy' "$w/compose.yml"
