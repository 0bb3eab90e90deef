#!/usr/bin/env bash
# Where the bytes of egress_filter.wasm go. Builds the module with its function names kept
# (cargo profile `wasm-size`: the release profile, names not stripped), optimizes it with the
# same wasm-opt flags as `make wasm` (names kept), and prints its sections, the largest
# functions and data segments, and the code per crate (filter/size_report.py, Python 3 only).
# The "shipped size" line is the module without its custom sections: what `make wasm` ships.
#
# Usage: filter/size-report.sh [--top N] [--crates N]
# Results of past runs, and what each change saved: bench/results/WASM_SIZE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p egress-filter --target wasm32-wasip1 --profile wasm-size >&2
mkdir -p target/size-report
named=target/size-report/egress_filter.named.wasm
cp target/wasm32-wasip1/wasm-size/egress_filter.wasm "${named}"
WASM_OPT_KEEP_NAMES=1 bash filter/optimize.sh "${named}"
python3 filter/size_report.py "${named}" "$@"
shipped=target/wasm32-wasip1/release/egress_filter.wasm
if [[ -f "${shipped}" ]]; then
  echo
  echo "make wasm output (if up to date): ${shipped}: $(stat -c %s "${shipped}") bytes"
fi
