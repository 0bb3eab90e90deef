#!/usr/bin/env bash
# Where the bytes of egress_filter.wasm go. Builds the module with its function names kept
# (cargo profile `wasm-size`: the release profile, names not stripped) and prints:
# 1. the module after the same wasm-opt pass as `make wasm` (names kept): its sections and its
#    "shipped size" (the module without custom sections: what `make wasm` ships);
# 2. the largest functions and data segments and the code per crate, read from the module
#    before wasm-opt (wasm-opt inlines across crates, which blurs who a byte belongs to).
# Python 3 only (filter/size_report.py reads the binary itself); no twiggy needed.
#
# Usage: filter/size-report.sh [--top N] [--crates N]
# Past results and what each change saved: bench/results/WASM_SIZE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p egress-filter --target wasm32-wasip1 --profile wasm-size >&2
mkdir -p target/size-report
raw=target/size-report/egress_filter.named.wasm
opt=target/size-report/egress_filter.named-opt.wasm
cp target/wasm32-wasip1/wasm-size/egress_filter.wasm "${raw}"
cp "${raw}" "${opt}"
WASM_OPT_KEEP_NAMES=1 bash filter/optimize.sh "${opt}"
echo "== after wasm-opt (what make wasm ships, plus the name section) =="
python3 filter/size_report.py "${opt}" --top 0 --crates 0
echo
echo "== before wasm-opt: who the bytes belong to =="
python3 filter/size_report.py "${raw}" "$@"
shipped=target/wasm32-wasip1/release/egress_filter.wasm
if [[ -f "${shipped}" ]]; then
  echo
  echo "make wasm output (if up to date): ${shipped}: $(stat -c %s "${shipped}") bytes"
fi
