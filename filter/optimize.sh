#!/usr/bin/env bash
# Size-optimizes the built filter module in place with wasm-opt (binaryen), when available.
# Usage: filter/optimize.sh target/wasm32-wasip1/release/egress_filter.wasm
# WASM_OPT_KEEP_NAMES=1 keeps the function names (filter/size-report.sh measures with them);
# everything else is what the shipped module gets.
set -euo pipefail
wasm="$1"
if ! command -v wasm-opt >/dev/null; then
  echo "optimize.sh: wasm-opt not found; leaving ${wasm} unoptimized" >&2
  exit 0
fi
before=$(stat -c %s "${wasm}")
names=(--strip-debug)
if [[ "${WASM_OPT_KEEP_NAMES:-0}" == 1 ]]; then
  names=(-g)
fi
# rustc's output uses these features; wasm-opt must be told it may keep them.
wasm-opt -Oz "${names[@]}" \
  --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
  --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types \
  "${wasm}" -o "${wasm}.opt"
mv "${wasm}.opt" "${wasm}"
echo "optimize.sh: ${wasm}: ${before} -> $(stat -c %s "${wasm}") bytes" >&2
