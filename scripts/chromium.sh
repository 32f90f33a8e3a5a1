#!/usr/bin/env bash
# Installs Debian's headless-capable `chromium` when missing: the access
# review's HTML is checked in a real browser (tests/review_html.rs). Where it
# cannot be installed (no root, no apt), the test skips its browser half and
# says so.
set -uo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium.sh: no apt-get: the review's browser check will be skipped" >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
else
    echo "chromium.sh: not root and no sudo: the review's browser check will be skipped" >&2
    exit 0
fi
echo "chromium.sh: installing chromium (Debian package) for the review's browser check" >&2
$sudo apt-get update -qq >&2 \
    && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >&2 \
    || echo "chromium.sh: install failed: the review's browser check will be skipped" >&2
exit 0
