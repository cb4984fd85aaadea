#!/usr/bin/env bash
# Real servers, a real browser and OCR for the tests, from Debian's packages: headless Chromium and
# its chromedriver (the web UI tests), Dovecot (the IMAP connector test) and tesseract (the OCR
# test). Install what is missing when we may (root with apt-get); otherwise say how, and those
# tests skip outside CI.
set -euo pipefail
missing=()
{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || missing+=(chromium chromium-driver)
[ -x /usr/sbin/dovecot ] || missing+=(dovecot-imapd)
[ -x /usr/bin/tesseract ] || missing+=(tesseract-ocr)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing ${missing[*]} for the browser, IMAP and OCR tests (apt-get)"
  apt-get update -qq
  # A system-wide Dovecot the package may start is left alone: the IMAP test runs its own on a free port.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "setup: missing ${missing[*]}; the browser / IMAP / OCR tests need them: sudo apt-get install ${missing[*]}" >&2
fi
