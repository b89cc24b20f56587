#!/usr/bin/env bash
# Debian packages the tests need: Chromium for the browser tests, Node.js for the JS tests.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "chromium: $(chromium --version 2>/dev/null | head -n 1)"
echo "node: $(node --version)"
