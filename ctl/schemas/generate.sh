#!/usr/bin/env bash
# Regenerates ctl/schemas/k8s/ (the schemas `egressctl render` embeds) from the pinned
# registry package tests/support/install-fleet-deps.sh installs. Usage: generate.sh [OUT_DIR]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=${here}/../../tests/support/schemas/.venv
out=${1:-${here}/k8s}
[[ -x ${venv}/bin/python ]] || { echo "generate.sh: run tests/support/install-fleet-deps.sh first" >&2; exit 1; }
"${venv}/bin/python" "${here}/generate.py" "${out}"
