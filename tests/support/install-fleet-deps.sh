#!/usr/bin/env bash
# Installs what the fleet tests (render k8s|istio, package) need:
#  - skopeo and docker-registry (Debian): the OCI layout `egressctl package` writes is pushed
#    into a local registry and pulled back. The packaged registry service is kept from starting
#    (policy-rc.d) and stopped if it runs; the tests start their own on a free loopback port.
#  - kubernetes-validate (PyPI, pinned) in tests/support/schemas/.venv: the published core
#    Kubernetes OpenAPI schemas, per Kubernetes version, with a CLI.
#  - @kubernetes-models/istio (npm, pinned) in tests/support/schemas/node_modules: validators
#    generated from Istio's own CRD schemas (crd-all.gen.yaml); and esbuild and typescript
#    (npm, pinned), with which ctl/schemas/generate-istio.sh makes what egressctl embeds.
# Idempotent.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
schemas=${repo_root}/tests/support/schemas
KUBERNETES_VALIDATE_VERSION=1.37.0

log() { printf 'install-fleet-deps.sh: %s\n' "$*" >&2; }

have() { command -v "$1" >/dev/null 2>&1 || [[ -x /usr/bin/$1 ]]; }

install_debian() {
  if have skopeo && have docker-registry; then
    return 0
  fi
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    log "skopeo and docker-registry are needed; install them (apt-get install skopeo docker-registry) and re-run."
    return 1
  fi
  local policy=/usr/sbin/policy-rc.d created=0
  if [[ ! -e ${policy} ]]; then
    printf '#!/bin/sh\nexit 101\n' > "${policy}"
    chmod +x "${policy}"
    created=1
  fi
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends skopeo docker-registry)
  log "installing skopeo and docker-registry with apt-get"
  if ! "${apt[@]}" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || true
    "${apt[@]}" >/dev/null 2>&1 || { log "apt-get install skopeo docker-registry failed"; [[ ${created} == 1 ]] && rm -f "${policy}"; return 1; }
  fi
  [[ ${created} == 1 ]] && rm -f "${policy}"
  if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
  if command -v service >/dev/null 2>&1; then
    service docker-registry stop >/dev/null 2>&1 || true
  fi
  have skopeo && have docker-registry
}

install_kubernetes_validate() {
  local venv=${schemas}/.venv
  if [[ -x ${venv}/bin/kubernetes-validate ]] \
    && "${venv}/bin/python" -c "from importlib import metadata as m; import sys; sys.exit(m.version('kubernetes-validate') != '${KUBERNETES_VALIDATE_VERSION}')" 2>/dev/null; then
    return 0
  fi
  log "installing kubernetes-validate ${KUBERNETES_VALIDATE_VERSION} into ${venv}"
  python3 -m venv "${venv}"
  "${venv}/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}" >/dev/null
}

install_istio_schemas() {
  local modules=${schemas}/node_modules
  if [[ -d ${modules}/@kubernetes-models/istio && ! ${schemas}/package-lock.json -nt ${modules} ]]; then
    return 0
  fi
  log "npm ci in ${schemas}"
  npm ci --prefix "${schemas}" --no-audit --no-fund --loglevel=error >/dev/null
  touch "${modules}"
}

install_debian
install_kubernetes_validate
install_istio_schemas
