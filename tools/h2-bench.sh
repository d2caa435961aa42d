#!/usr/bin/env bash
# HTTP/2 benchmark with h2load (Debian's nghttp2-client) against a running broker:
#   1. request rate over h2c (GET /healthz, 8 connections x 100 streams),
#   2. streams per connection: N long-polls held at once on ONE connection, each answered when
#      its 1 s hold ends -- the run takes about 1 s however large N is if they all run
#      concurrently,
#   3. publishes over h2 (POST /topics/bench, 4 connections x 50 streams; every answer waits
#      for the group commit).
#
#   tools/h2-bench.sh [BASE_URL] [STREAMS]     (default http://127.0.0.1:8080 and 1000)
#
# Start the broker first, e.g. `tools/run.sh --durability write --h2-max-streams 1000`. Loopback
# only: point it at your own broker, never at someone else's.
set -euo pipefail
base="${1:-http://127.0.0.1:8080}"
streams="${2:-1000}"
command -v h2load >/dev/null || { echo "h2load not found: apt-get install nghttp2-client" >&2; exit 1; }
curl -sf "$base/healthz" >/dev/null || { echo "no broker at $base" >&2; exit 1; }

body="$(mktemp)"
trap 'rm -f "$body"' EXIT
printf 'benchmark event' >"$body"

echo "== 1. GET /healthz, 8 connections x 100 concurrent streams"
h2load -n 50000 -c 8 -m 100 "$base/healthz" | grep -E "^(finished|requests|status codes)"

echo "== 2. $streams concurrent long-polls (1 s hold) on one connection"
h2load -n "$streams" -c 1 -m "$streams" "$base/topics/bench-lp?timeout=1" |
  grep -E "^(finished|requests|status codes)"

echo "== 3. POST /topics/bench, 4 connections x 50 concurrent streams"
h2load -n 20000 -c 4 -m 50 -d "$body" -H 'content-type: text/plain' "$base/topics/bench" |
  grep -E "^(finished|requests|status codes)"
