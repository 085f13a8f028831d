#!/bin/sh
# level: system
# tier: install, upgrade, restore
# timeout: 30s

# The app is deployed, as `abra app ls -S -m` reports CCCI_APP_DOMAIN with
# status "deployed". When the app is a real stack (example_app.py mode),
# 127.0.0.1:APP_PORT serves the version of the image the app service runs
# (after a release install: that release's version). The install tier
# writes the marker into the data volume (PUT /data on a real app, the
# volume's directory in the file-backed fake swarm: example_app.py
# data-put) for 15-changed-after-backup.sh and 20-restored.sh.
#
# Knobs for cc-ci-run's own tests (the same in every test here)
# CCCI_EXAMPLE_FAIL=<tier> or =all fails this test in that tier;
# CCCI_EXAMPLE_HANG=<tier> touches $CCCI_EXAMPLE_READY_DIR/test-<tier>
# (when that is set) and then sleeps until killed.
set -eu

# shellcheck source=knobs.inc
. "$(dirname "$0")/knobs.inc"

: "${CCCI_APP_DOMAIN:?CCCI_APP_DOMAIN is not set}"
abra="${CCCI_ABRA:-abra}"
if [ -n "${CCCI_SERVER:-}" ]; then
  apps=$("$abra" app ls -s "$CCCI_SERVER" -S -m)
else
  apps=$("$abra" app ls -S -m)
fi

info=$(printf '%s' "$apps" | python3 -c '
import json, sys
domain = sys.argv[1]
data = json.load(sys.stdin)
apps = [a for s in data.values() for a in s.get("apps", [])
        if a.get("domain") == domain]
if not apps:
    sys.exit("%s is not listed by abra app ls" % domain)
status = apps[0].get("status")
if status != "deployed":
    sys.exit("%s has status %r, want \"deployed\"" % (domain, status))
print("%s is deployed (version %s)" % (domain, apps[0].get("version")))
print(apps[0].get("version", ""))
print(apps[0].get("chaos", ""))
' "$CCCI_APP_DOMAIN")
printf '%s\n' "$info" | sed -n 1p
version=$(printf '%s\n' "$info" | sed -n 2p)
chaos=$(printf '%s\n' "$info" | sed -n 3p)

lib="$(dirname "$0")/example_app.py"
if [ "$tier" = install ]; then
  case "$(python3 "$lib" data-mode)" in
  none*) ;;
  *)
    marker=$(python3 "$lib" marker)
    python3 "$lib" data-put "$marker"
    got=$(python3 "$lib" data-get)
    if [ "$got" != "$marker" ]; then
      echo "the data volume holds '$got' after writing '$marker'" >&2
      exit 1
    fi
    echo "marker written into the data volume: $marker"
    ;;
  esac
fi
mode=$(python3 "$lib" mode)
case "$mode" in
http*) ;;
*)
  echo "no HTTP checks: ${mode#none: }"
  exit 0
  ;;
esac
python3 "$lib" serves "$(python3 "$lib" image-version)"
if [ "$tier" = install ] && [ "$chaos" = false ]; then
  case "$version" in
  *+*) python3 "$lib" serves "${version%%+*}" ;; # release X+Y runs image X
  esac
fi
