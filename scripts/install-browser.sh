#!/usr/bin/env bash
# Install headless Chromium (Debian package) for tests/test_browser.py. Idempotent: does nothing when
# `chromium` is already on PATH. Needs root (or sudo) and access to the Debian package mirror.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  echo "chromium already installed: $(command -v chromium)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install-browser.sh: need root (or sudo) to apt-get install chromium" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium
command -v chromium >/dev/null 2>&1 || { echo "install-browser.sh: chromium still not on PATH" >&2; exit 1; }
echo "installed $(chromium --version 2>/dev/null || echo chromium)"
