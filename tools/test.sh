#!/usr/bin/env bash
# Installs what is missing, builds Herald and runs every test with CTest, in two passes:
#   1. build/       Release with -Werror: unit, integration and format tests;
#   2. build-asan/  AddressSanitizer (with LeakSanitizer) and UndefinedBehaviorSanitizer: the
#                   unit and integration tests again, against the sanitized herald; any report
#                   fails the run.
# Usage: tools/test.sh                  both passes: every test (what CI runs)
#        tools/test.sh --no-sanitizers  the Release pass only (quicker, while iterating)
# HERALD_SANITIZE=thread tools/test.sh runs the second pass with other sanitizers instead (in
# build-san-thread/). CMAKE_CXX_COMPILER_LAUNCHER=ccache (and _C_) are honoured by CMake.
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize="${HERALD_SANITIZE:-address,undefined}"
case "${1:-}" in
  "") ;;
  --no-sanitizers) sanitize="" ;;
  *) echo "usage: tools/test.sh [--no-sanitizers]" >&2; exit 2 ;;
esac

bash tools/install-deps.sh --test
npm ci --prefix tests/browser --no-audit --no-fund
npm ci --prefix tests/ws-node --no-audit --no-fund
jobs="$(nproc)"

echo "== pass 1: Release build (build/), unit, integration and format tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DHERALD_WERROR=ON
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs" --timeout 600

if [ -z "$sanitize" ]; then
  exit 0
fi
build=build-asan
[ "$sanitize" = "address,undefined" ] || build="build-san-${sanitize//,/-}"
echo "== pass 2: -fsanitize=$sanitize build ($build/), unit and integration tests"
# -O1 (with asserts, unlike Release): ASan's own advice for speed; -g1 gives the reports file and
# line. -Werror stays with the Release build: sanitizer instrumentation makes GCC warn wrongly.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DHERALD_SANITIZE="$sanitize" \
  -DCMAKE_C_FLAGS_DEBUG="-O1 -g1" -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1"
cmake --build "$build" -j"$jobs"
# Every report is fatal: the first error stops the process (halt_on_error; UBSan is built with
# -fno-sanitize-recover=all), so a broker under test dies and its test fails with the report; a
# leak makes a process that exits cleanly exit 1 instead, which the tests check.
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1:strict_string_checks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export TSAN_OPTIONS="halt_on_error=1${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
# The format check (label lint) does not depend on the build: it ran in the first pass.
ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 600 -L 'unit|integration'
