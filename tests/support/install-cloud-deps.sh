#!/usr/bin/env bash
# Installs what the AWS SigV4 tests run against, into <repo>/.venv-cloud (a virtualenv of its
# own, so the Envoy virtualenv stays as envoy/install.sh made it):
#  - botocore: AWS's own SigV4 signer, the independent oracle of the unit tests
#    (filter/core/tests/sigv4_botocore.rs runs tests/support/sigv4_oracle.py with it);
#  - moto[server] 5.x: the AWS stand-in the end-to-end tests start (`moto_server`), which
#    checks every signature with botocore once IAM authentication is enforced.
# Idempotent: does nothing when both import already. Needs python3 with the venv module
# (Debian: python3-venv, installed with apt-get when missing and running as root).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
venv=${repo_root}/.venv-cloud

if [[ -x ${venv}/bin/python ]] && "${venv}/bin/python" -c 'import botocore, moto, flask' 2>/dev/null \
  && [[ -x ${venv}/bin/moto_server ]]; then
  exit 0
fi

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "install-cloud-deps.sh: installing python3-venv with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null 2>&1 || {
      apt-get update -qq >/dev/null 2>&1 || true
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    }
  else
    echo "install-cloud-deps.sh: python3 with the venv module is needed (Debian: apt-get install python3-venv)" >&2
    exit 1
  fi
fi

if [[ ! -x ${venv}/bin/python ]]; then
  python3 -m venv "${venv}"
fi
echo "install-cloud-deps.sh: pip install botocore 'moto[server]' into ${venv}" >&2
"${venv}/bin/python" -m pip install --quiet --disable-pip-version-check \
  'botocore>=1.34' 'moto[server]>=5.1,<6'
"${venv}/bin/python" -c 'import botocore, moto, flask' >/dev/null
[[ -x ${venv}/bin/moto_server ]] || { echo "install-cloud-deps.sh: moto_server missing after install" >&2; exit 1; }
