#!/bin/sh
# level: system
# tier: backup
# timeout: 30s

# Runs after `abra app backup create`, before `abra app restore`: the
# backup holds the marker the install tier wrote (00-deployed.sh), and this
# test overwrites the marker on the data volume, so that only a restore
# that really copies the backup back brings it back (20-restored.sh checks
# that). The backup is read where it is at hand: the stand-in abra's store
# ($CCCI_FAKE_STATE/backups/DOMAIN/data/marker).
#
# Knobs as in 00-deployed.sh (CCCI_EXAMPLE_FAIL, CCCI_EXAMPLE_HANG).
set -eu

# shellcheck source=knobs.inc
. "$(dirname "$0")/knobs.inc"

: "${CCCI_APP_DOMAIN:?CCCI_APP_DOMAIN is not set}"
lib="$(dirname "$0")/example_app.py"
case "$(python3 "$lib" data-mode)" in
none*)
  echo "no data volume to change: $(python3 "$lib" data-mode | sed 's/^none: //')"
  exit 0
  ;;
esac
marker=$(python3 "$lib" marker)
got=$(python3 "$lib" data-get)
if [ "$got" != "$marker" ]; then
  echo "after the backup the data volume holds '$got', want '$marker'" >&2
  exit 1
fi
saved="${CCCI_FAKE_STATE:-/nonexistent}/backups/$CCCI_APP_DOMAIN/data/marker"
if [ -n "${CCCI_FAKE_STATE:-}" ]; then
  if [ ! -f "$saved" ]; then
    echo "the backup holds no marker ($saved is missing)" >&2
    exit 1
  fi
  if [ "$(cat "$saved")" != "$marker" ]; then
    echo "the backup holds '$(cat "$saved")', want '$marker'" >&2
    exit 1
  fi
  echo "the backup holds the marker"
fi
changed="changed after the backup (run ${CCCI_RUN_ID:-manual})"
python3 "$lib" data-put "$changed"
got=$(python3 "$lib" data-get)
if [ "$got" != "$changed" ]; then
  echo "the data volume holds '$got' after writing '$changed'" >&2
  exit 1
fi
echo "marker overwritten on the data volume: the restore must bring it back"
