#!/usr/bin/env bash
# Build and install llama-cpp-python with its OpenAI-compatible server (the real-LLM-server test,
# tests/providers/test_llamacpp_server.py). Idempotent: does nothing when `import llama_cpp.server` works.
#
# The default build enables the CPU's AMX tile instructions, and the binary it makes crashes on
# these machines; native tuning and AMX are switched off. The build compiles llama.cpp from
# source: about 4-5 minutes on 2 cores, once (pip caches the wheel afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"

if "$PYTHON" -c "import llama_cpp.server" >/dev/null 2>&1; then
  echo "llama-cpp-python with its server is already installed: $("$PYTHON" -c 'import llama_cpp; print(llama_cpp.__version__)')"
  exit 0
fi

start=$(date +%s)
echo "building llama-cpp-python[server] from source (about 4-5 minutes on 2 cores)..."
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
  "$PYTHON" -m pip install -c constraints.txt 'llama-cpp-python[server]'
"$PYTHON" -c "import llama_cpp.server" # fail loudly when the build did not give a working server
end=$(date +%s)
echo "llama-cpp-python[server] installed in $((end - start))s"
