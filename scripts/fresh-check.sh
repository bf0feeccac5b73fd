#!/usr/bin/env bash
# A new user's first hour, measured: clone this repository (its committed HEAD) into a temporary
# folder, create a virtual environment, and run the README's two quick-start commands there with
# empty caches (HF_HOME, XDG_CACHE_HOME, ASSAY_HOME and the converted-model cache all fresh), printing
# the wall time of each. The summary goes to benchmarks/results/fresh_check.md (and .json) of this
# checkout, with the machine it ran on.
#
# Usage: scripts/fresh-check.sh [--dry-run] [--first-only] [--keep] [-- PYTEST_ARGS...]
#   --dry-run     print the commands that would run, run nothing
#   --first-only  run only command 1 (install + train the example), not the test suite
#   --keep        keep the temporary folder (default: removed at the end)
#   PYTEST_ARGS   passed to command 2 (scripts/test.sh), e.g. -- -m "not slow"
# Run it on an otherwise idle machine: the numbers are wall times.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
DRY=0 FIRST_ONLY=0 KEEP=0
PYTEST_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --first-only) FIRST_ONLY=1 ;;
    --keep) KEEP=1 ;;
    --) shift; PYTEST_ARGS=("$@"); break ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done

# The two commands, exactly as the README's quick start writes them (the lines after "# 1." / "# 2.").
readme_command() {
  awk -v tag="# $1." '/^```bash/{inblock=1; next} /^```/{inblock=0} inblock && index($0, tag)==1 {getline; print; exit}' \
    "$REPO/README.md"
}
CMD1="$(readme_command 1)"
CMD2="$(readme_command 2)"
if [ -z "$CMD1" ] || [ -z "$CMD2" ]; then
  echo "error: expected the README's quick start to have commands after '# 1.' and '# 2.'; found none" >&2
  exit 2
fi
if [ ${#PYTEST_ARGS[@]} -gt 0 ]; then
  CMD2="$CMD2 $(printf '%q ' "${PYTEST_ARGS[@]}")"
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/assay-fresh-XXXXXX")"
CLONE="$TMP/assay"
echo "commit:    $(git -C "$REPO" rev-parse --short HEAD) (uncommitted changes are not part of the check)"
echo "folder:    $TMP"
echo "venv:      python -m venv .venv && . .venv/bin/activate"
echo "command 1: $CMD1"
[ "$FIRST_ONLY" = 1 ] || echo "command 2: $CMD2"
if [ "$DRY" = 1 ]; then
  rm -rf "$TMP"
  exit 0
fi
cleanup() { if [ "$KEEP" = 0 ]; then rm -rf "$TMP"; else echo "kept $TMP"; fi; }
trap cleanup EXIT

LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
git clone -q "$REPO" "$CLONE"
cd "$CLONE"
# Empty caches: no converted model, no hub cache, no pip cache of built wheels from this checkout.
export HF_HOME="$TMP/hf" XDG_CACHE_HOME="$TMP/cache" ASSAY_HOME="$TMP/assay-home"
unset ASSAY_MODEL_CACHE ASSAY_SHARED_DATA VIRTUAL_ENV
export PIP_NO_CACHE_DIR=1 ASSAY_TEST_ARTIFACTS="$TMP/test-artifacts"

python -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate

run_timed() {  # name, command: runs it with bash, logs to $TMP/name.log, sets T_name and RC_name
  local name="$1" cmd="$2" start end rc
  echo "--- $name: $cmd"
  start=$(date +%s)
  set +e
  bash -c "$cmd" >"$TMP/$name.log" 2>&1
  rc=$?
  set -e
  end=$(date +%s)
  printf -v "T_$name" "%d" "$((end - start))"
  printf -v "RC_$name" "%d" "$rc"
  tail -n 5 "$TMP/$name.log" | sed 's/^/    /'
  eval "echo \"    wall time: \${T_$name} s, exit code \$rc\""
}

run_timed command1 "$CMD1"
T_command2="" RC_command2=""
if [ "$FIRST_ONLY" = 0 ]; then
  run_timed command2 "$CMD2"
fi
SUMMARY1="$(grep -E '^(artifact:|kappa|.*kappa)' "$TMP/command1.log" | tail -n 2 || true)"
SUMMARY2="$(grep -E '(passed|failed|skipped|error)' "$TMP/command2.log" 2>/dev/null | tail -n 1 || true)"

# --- the record ------------------------------------------------------------------------------------
OUT="$REPO/benchmarks/results"
mkdir -p "$OUT"
CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
FLAGS="$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx|avx2|avx512f|avx512_bf16|amx_tile|fma|sse4_2)$' | tr '\n' ' ')"
CORES="$(nproc)"
LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"
NOW="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
PYV="$(python --version 2>&1)"
TORCH="$(python -c 'import torch; print(torch.__version__)' 2>/dev/null || echo 'not installed')"
{
  echo "# Fresh-clone check (scripts/fresh-check.sh)"
  echo
  echo "Run $NOW on commit $(git -C "$CLONE" rev-parse --short HEAD): a clone in a temporary folder, a new"
  echo "virtual environment, empty HF_HOME / XDG_CACHE_HOME / ASSAY_HOME (so the converted-model cache is"
  echo "empty too), no pip cache; the README's quick-start commands as written."
  echo
  echo "| step | command | wall time (s) | exit code |"
  echo "|---|---|---|---|"
  echo "| 1 | \`$CMD1\` | $T_command1 | $RC_command1 |"
  if [ "$FIRST_ONLY" = 0 ]; then
    echo "| 2 | \`$CMD2\` | $T_command2 | $RC_command2 |"
  else
    echo "| 2 | \`$CMD2\` | not run (--first-only) | |"
  fi
  echo
  echo "Command 1 printed: $(echo "$SUMMARY1" | tr '\n' ' ')"
  [ "$FIRST_ONLY" = 1 ] || echo "Command 2 printed: $SUMMARY2"
  echo
  echo "## Machine"
  echo
  echo "- cpu: $CPU"
  echo "- cores: $CORES; no GPU used"
  echo "- cpu flags (selected): $FLAGS"
  echo "- load average (1, 5, 15 min) at the start: $LOAD0; at the end: $LOAD"
  echo "- python: $PYV; torch in the venv: $TORCH"
  echo "- pip: $(python -m pip --version | cut -d' ' -f1-2) (the torch build it found is the version above)"
} >"$OUT/fresh_check.md"
NOW="$NOW" CPU="$CPU" CORES="$CORES" LOAD="$LOAD" PYV="$PYV" TORCH="$TORCH" CMD1="$CMD1" CMD2="$CMD2" \
T1="$T_command1" RC1="$RC_command1" T2="$T_command2" RC2="$RC_command2" FIRST_ONLY="$FIRST_ONLY" \
COMMIT="$(git -C "$CLONE" rev-parse HEAD)" python - "$OUT/fresh_check.json" <<'PY'
import json
import os
import sys

e = os.environ
steps = [{"command": e["CMD1"], "seconds": int(e["T1"]), "exit_code": int(e["RC1"])}]
if e["FIRST_ONLY"] == "0":
    steps.append({"command": e["CMD2"], "seconds": int(e["T2"]), "exit_code": int(e["RC2"])})
record = {"date": e["NOW"], "commit": e["COMMIT"], "cpu": e["CPU"], "cores": int(e["CORES"]),
          "load_average": e["LOAD"], "python": e["PYV"], "torch": e["TORCH"], "steps": steps}
with open(sys.argv[1], "w") as fh:
    json.dump(record, fh, indent=1)
PY
echo "written: $OUT/fresh_check.md"
cat "$OUT/fresh_check.md"
[ "$RC_command1" = 0 ] && { [ "$FIRST_ONLY" = 1 ] || [ "$RC_command2" = 0 ]; }
