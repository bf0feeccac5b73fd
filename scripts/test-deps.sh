#!/usr/bin/env bash
# System pieces only the tests need, installed so that no test skips:
# - Debian chromium for the browser test (Playwright drives it through executable_path=/usr/bin/chromium;
#   never `playwright install`);
# - PostgreSQL server binaries (/usr/lib/postgresql/*/bin) for the registry/API tests, which start a
#   throwaway cluster on 127.0.0.1 themselves;
# - a llama.cpp server built from source for the real-LLM-server test (scripts/build_llamacpp.sh).
# apt needs root; as another user a missing piece is reported and its tests will skip (CI fails on skips).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing ${missing[*]} (apt)..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "note: ${missing[*]} missing and not root (apt-get install -y ${missing[*]}); their tests will skip" >&2
  fi
fi
if [ -x scripts/build_llamacpp.sh ] && ! python -c "import llama_cpp.server" >/dev/null 2>&1; then
  scripts/build_llamacpp.sh
fi
