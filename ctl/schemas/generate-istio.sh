#!/usr/bin/env bash
# Regenerates ctl/schemas/istio/ (the Istio validators `egressctl render istio` embeds) from the
# pinned npm packages tests/support/install-fleet-deps.sh installs. Usage: generate-istio.sh [OUT_DIR]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
modules=${here}/../../tests/support/schemas/node_modules
out=${1:-${here}/istio}
[[ -d ${modules}/@kubernetes-models/istio && -d ${modules}/esbuild ]] \
  || { echo "generate-istio.sh: run tests/support/install-fleet-deps.sh first" >&2; exit 1; }
node "${here}/generate-istio.mjs" "${modules}" "${out}"
