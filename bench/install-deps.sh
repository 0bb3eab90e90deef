#!/usr/bin/env bash
# Installs what `make bench` needs beyond `make deps`: wrk (Debian's package). Idempotent.
set -euo pipefail
command -v wrk >/dev/null 2>&1 && exit 0
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "bench/install-deps.sh: wrk is not installed; install it (Debian/Ubuntu: apt-get install wrk)" >&2
  exit 1
fi
apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }
command -v wrk >/dev/null
