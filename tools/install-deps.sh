#!/usr/bin/env bash
# Installs what Herald needs on Debian 12, from Debian's own packages: to build and run it, and
# with --test also what the test suite drives it with (real clients: curl, Python, Chromium).
# Idempotent: packages already present are skipped. Needs root (or sudo).
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config
  libuv1-dev node-llhttp nlohmann-json3-dev librocksdb-dev libssl-dev doctest-dev
  libnghttp2-dev libwslay-dev
)
if [ "${1:-}" = "--test" ]; then
  pkgs+=(curl python3 python3-pytest python3-websockets ca-certificates procps chromium nodejs)
  # HTTP/2 and TLS tests: python-h2, nghttp / h2load, openssl for a self-signed certificate.
  pkgs+=(python3-h2 nghttp2-client openssl)
  pkgs+=(clang-format)
  # NodeSource's nodejs bundles npm; Debian's does not.
  command -v npm >/dev/null 2>&1 || pkgs+=(npm)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
