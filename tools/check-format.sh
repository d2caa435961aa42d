#!/usr/bin/env bash
# Fails when a C++ source of the project is not formatted per .clang-format.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.cc' '*.h' 2>/dev/null || find broker proto server storage transports tools tests -name '*.cc' -o -name '*.h')
clang-format --dry-run --Werror $files
echo "format: $(echo "$files" | wc -w) files clean"
