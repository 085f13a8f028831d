#!/bin/sh
# level: system
# tier: install, upgrade, restore
# tags: browser
# depends-on: 00-deployed.sh
# timeout: 2m

# The app's page in a real browser (page_test.py: pytest + Playwright,
# Debian's Chromium), each case reported on its own through
# CCCI_JUNIT_OUT, a failing page's screenshot left in CCCI_ARTIFACTS.
#
# It needs a real app (example_app.py mode), a python with playwright and
# pytest-playwright (CCCI_EXAMPLE_PLAYWRIGHT_PYTHON, else python3) and Chromium
# (CCCI_EXAMPLE_CHROMIUM, else /usr/bin/chromium). Without a real app there is
# nothing to open: it says so and passes, as 00-deployed.sh does. Without
# Playwright or Chromium it reports one skipped case naming what is
# missing (counted as skipped in the summary, never a silent pass), and
# fails instead when CCCI_EXAMPLE_REQUIRE_PLAYWRIGHT=1.
set -eu

# shellcheck source=knobs.inc
. "$(dirname "$0")/knobs.inc"

here=$(dirname "$0")
lib="$here/example_app.py"
mode=$(python3 "$lib" mode)
case "$mode" in
http*) ;;
*)
  echo "no browser checks: ${mode#none: }"
  exit 0
  ;;
esac

python="${CCCI_EXAMPLE_PLAYWRIGHT_PYTHON:-python3}"
chromium="${CCCI_EXAMPLE_CHROMIUM:-/usr/bin/chromium}"
missing=""
"$python" -c 'import playwright, pytest_playwright' 2>/dev/null ||
  missing="the python packages playwright and pytest-playwright ($python)"
if [ ! -x "$chromium" ]; then
  missing="${missing:+$missing and }Chromium ($chromium)"
fi
if [ -n "$missing" ]; then
  if [ "${CCCI_EXAMPLE_REQUIRE_PLAYWRIGHT:-}" = 1 ]; then
    echo "missing $missing, required (CCCI_EXAMPLE_REQUIRE_PLAYWRIGHT=1)" >&2
    exit 1
  fi
  echo "skipped: missing $missing"
  why=$(printf 'missing %s' "$missing" | sed 's/&/\&amp;/g; s/</\&lt;/g; s/"/\&quot;/g')
  printf '<testsuites><testsuite name="page"><testcase classname="page_test" name="browser"><skipped message="%s"/></testcase></testsuite></testsuites>\n' \
    "$why" >"$CCCI_JUNIT_OUT"
  exit 0
fi

port=${mode#http }
PAGE_URL="http://127.0.0.1:$port/page"
EXPECT_VERSION=$(python3 "$lib" image-version)
EXPECT_DATA=$(python3 "$lib" marker)
CCCI_EXAMPLE_CHROMIUM="$chromium"
export PAGE_URL EXPECT_VERSION EXPECT_DATA CCCI_EXAMPLE_CHROMIUM
# The served version first (the upgraded task may still be starting).
python3 "$lib" serves "$EXPECT_VERSION" >/dev/null
# No __pycache__ beside the recipe's tests (pytest rewrites asserts into one).
export PYTHONDONTWRITEBYTECODE=1
exec "$python" -m pytest "$here/page_test.py" -p no:cacheprovider -q \
  --junitxml="$CCCI_JUNIT_OUT" \
  --screenshot only-on-failure \
  --output "${CCCI_ARTIFACTS:-${TMPDIR:-/tmp}}/page-${CCCI_TIER:-test}"
