#!/bin/sh
# level: system
# tier: restore
# timeout: 30s

# After backup and restore the app is deployed, its data volume exists, and
# (against the file-backed stand-ins, when CCCI_FAKE_STATE is set) the
# backup that the restore read is there. The data volume (GET /data on
# 127.0.0.1:APP_PORT when the app is a real stack, the volume's directory
# in the file-backed fake swarm: example_app.py data-get) holds the marker
# the install tier wrote, which 15-changed-after-backup.sh overwrote after
# the backup: it came back through the restore. So does the backup when it
# is at hand ($CCCI_FAKE_STATE/backups/DOMAIN/data).
#
# Knobs as in 00-deployed.sh (CCCI_EXAMPLE_FAIL, CCCI_EXAMPLE_HANG).
set -eu

# shellcheck source=knobs.inc
. "$(dirname "$0")/knobs.inc"

: "${CCCI_APP_DOMAIN:?CCCI_APP_DOMAIN is not set}"
abra="${CCCI_ABRA:-abra}"
docker="${CCCI_DOCKER:-docker}"
stack="${CCCI_STACK:-$(printf '%s' "$CCCI_APP_DOMAIN" | tr . _ | cut -c1-45)}"

"$abra" app ls -S -m | python3 -c '
import json, sys
domain = sys.argv[1]
data = json.load(sys.stdin)
status = [a.get("status") for s in data.values() for a in s.get("apps", [])
          if a.get("domain") == domain]
if status != ["deployed"]:
    sys.exit("%s: status %r after restore, want deployed" % (domain, status))
' "$CCCI_APP_DOMAIN"

volumes=$("$docker" volume ls -q --filter "label=com.docker.stack.namespace=$stack")
case "$volumes" in
*"${stack}_data"*) ;;
*)
  echo "volume ${stack}_data is missing after restore (have: $volumes)" >&2
  exit 1
  ;;
esac

if [ -n "${CCCI_FAKE_STATE:-}" ] && [ ! -d "$CCCI_FAKE_STATE/backups/$CCCI_APP_DOMAIN" ]; then
  echo "no backup of $CCCI_APP_DOMAIN in the fake swarm" >&2
  exit 1
fi
echo "$CCCI_APP_DOMAIN restored: volume ${stack}_data present"

lib="$(dirname "$0")/example_app.py"
case "$(python3 "$lib" data-mode)" in
none*)
  echo "no data volume to check: $(python3 "$lib" data-mode | sed 's/^none: //')"
  exit 0
  ;;
esac
marker=$(python3 "$lib" marker)
got=$(python3 "$lib" data-get)
if [ "$got" != "$marker" ]; then
  echo "the data volume holds '$got' after restore, want '$marker' (the restore did not bring the backup back)" >&2
  exit 1
fi
saved="${CCCI_FAKE_STATE:-/nonexistent}/backups/$CCCI_APP_DOMAIN/data/marker"
if [ -f "$saved" ] && [ "$(cat "$saved")" != "$marker" ]; then
  echo "the backup holds '$(cat "$saved")', want '$marker'" >&2
  exit 1
fi
echo "the marker came back from backup and restore: $marker"
