#!/usr/bin/env bash
# System packages only the tests need: Debian chromium for the browser test (Playwright drives it
# through executable_path=/usr/bin/chromium; never `playwright install`), and a llama.cpp server
# built from source for the real-LLM-server test.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: /usr/bin/chromium missing and not root; the browser test will be skipped" >&2
  fi
fi
if [ -x scripts/build_llamacpp.sh ] && ! python -c "import llama_cpp.server" >/dev/null 2>&1; then
  scripts/build_llamacpp.sh
fi
