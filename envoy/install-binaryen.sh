#!/usr/bin/env bash
# Installs wasm-opt (Debian's binaryen) when it is missing. Without root or apt it says so and
# the build ships the unoptimized module.
set -euo pipefail
if command -v wasm-opt >/dev/null; then exit 0; fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "install-binaryen.sh: installing binaryen (wasm-opt) with apt-get" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq binaryen >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq binaryen >/dev/null; }
else
  echo "install-binaryen.sh: wasm-opt not found and cannot apt-get install binaryen; the filter module stays unoptimized" >&2
fi
