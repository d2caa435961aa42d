#!/usr/bin/env bash
# Installs what is missing, builds Herald and runs every test (unit + integration) with CTest.
# HERALD_SANITIZE=address,undefined builds with sanitizers (in build-asan/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh --test
npm ci --prefix tests/browser --no-audit --no-fund
npm ci --prefix tests/ws-node --no-audit --no-fund
build=build
args=(-DCMAKE_BUILD_TYPE=Release -DHERALD_WERROR=ON)
if [ -n "${HERALD_SANITIZE:-}" ]; then
  build=build-asan
  args=(-DCMAKE_BUILD_TYPE=Debug -DHERALD_SANITIZE="$HERALD_SANITIZE")
fi
cmake -S . -B "$build" "${args[@]}"
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" --timeout 600
