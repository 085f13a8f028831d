#!/bin/sh
# level: system
# tier: upgrade
# timeout: 30s

# The upgrade tier chaos-deployed the ref under test. abra reports chaos
# "true" and a chaos version that is a clean short sha, a prefix of the
# run's recipe checkout's HEAD when that checkout is at hand. When the app
# is a real stack (example_app.py mode), 127.0.0.1:APP_PORT serves the
# version of the checkout's compose.yml image (else: of the image the app
# service runs).
#
# Knobs as in 00-deployed.sh (CCCI_EXAMPLE_FAIL, CCCI_EXAMPLE_HANG).
set -eu

# shellcheck source=knobs.inc
. "$(dirname "$0")/knobs.inc"

: "${CCCI_APP_DOMAIN:?CCCI_APP_DOMAIN is not set}"
abra="${CCCI_ABRA:-abra}"
apps=$("$abra" app ls -S -m)

head=""
checkout="${ABRA_DIR:-}/recipes/${CCCI_RECIPE:-example}"
if [ -n "${ABRA_DIR:-}" ] && [ -d "$checkout" ]; then
  head=$(git -C "$checkout" rev-parse HEAD)
fi

printf '%s' "$apps" | python3 -c '
import json, re, sys
domain, head = sys.argv[1], sys.argv[2]
data = json.load(sys.stdin)
apps = [a for s in data.values() for a in s.get("apps", [])
        if a.get("domain") == domain]
if not apps:
    sys.exit("%s is not listed by abra app ls" % domain)
app = apps[0]
if app.get("chaos") != "true":
    sys.exit("%s: chaos is %r, want \"true\"" % (domain, app.get("chaos")))
cv = app.get("chaosVersion", "")
if not re.fullmatch(r"[0-9a-f]{7,40}", cv):
    sys.exit("%s: chaosVersion %r is not a clean short sha" % (domain, cv))
if head and not head.startswith(cv):
    sys.exit("%s: chaosVersion %s is not the checkout HEAD %s"
             % (domain, cv, head))
print("%s runs chaos version %s" % (domain, cv))
' "$CCCI_APP_DOMAIN" "$head"

lib="$(dirname "$0")/example_app.py"
mode=$(python3 "$lib" mode)
case "$mode" in
http*) ;;
*)
  echo "no HTTP checks: ${mode#none: }"
  exit 0
  ;;
esac
want=""
if [ -n "$head" ] && [ -f "$checkout/compose.yml" ]; then
  want=$(sed -n 's/^ *image: *ccci-example:\([^ ]*\) *$/\1/p' "$checkout/compose.yml" | head -1)
fi
[ -n "$want" ] || want=$(python3 "$lib" image-version)
python3 "$lib" serves "$want"
