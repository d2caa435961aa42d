#!/usr/bin/env bash
# Soak: thousands of subscribers churning on every transport while publishing, for a bounded
# time (default 30 min), with the broker's RSS, sockets and CPU sampled. See tools/soak.py
# --help. Builds the Release broker first when build/herald is missing.
#   tools/soak.sh                      # 30 minutes, 2,000 subscribers
#   tools/soak.sh --minutes 5 --subs 500 --verbose
#   tools/soak.sh --minutes 10 -- --threads 1   # flags after -- go to herald
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x build/herald ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
  cmake --build build -j"$(nproc)" --target herald
fi
exec /usr/bin/python3 tools/soak.py "$@"  # Debian's python3-h2 and python3-websockets
