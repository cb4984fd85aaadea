#!/usr/bin/env bash
# The web UI test drives Debian's headless Chromium through its chromedriver. Install both when
# missing and we may (root with apt-get); otherwise say how, and the UI test skips outside CI.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing chromium + chromium-driver for the web UI test (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
else
  echo "setup: no /usr/bin/chromium; the web UI test needs it: sudo apt-get install chromium chromium-driver" >&2
fi
