#!/usr/bin/env bash
# Installs what is missing, builds Herald (Release) and runs the broker on its defaults
# (http://127.0.0.1:8080, history in ./herald-data). Extra arguments go to herald.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
exec build/herald "$@"
