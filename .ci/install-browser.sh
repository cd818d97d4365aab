#!/usr/bin/env bash
# Installs the headless browser of the console's browser test (tests/e2e/test_console_browser.py):
# Debian's chromium and the chromedriver built with it (/usr/bin/chromium, /usr/bin/chromedriver).
# Selenium, which drives it, is in the test extra of setup.cfg. No browser is downloaded from
# anywhere else.
#
# Idempotent: apt-get runs only when a package is missing. Quiet on success; on failure it prints
# apt-get's output. Runs as root, or through sudo when it is not.
set -euo pipefail

missing=()
for pkg in chromium chromium-driver; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
((${#missing[@]})) || exit 0

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${sudo[@]}" apt-get update -qq &&
       DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-browser.sh: apt-get install ${missing[*]} failed" >&2
    exit 1
fi
