#!/usr/bin/env bash
# Installs the third-party servers the end-to-end tests run against:
#  - nginx (Debian's `nginx-light`, else `nginx`). Does nothing when nginx is already there.
#    The package's own service is kept from starting (policy-rc.d) and stopped if it started
#    anyway, so no system nginx is left on port 80; the tests run their own nginx on free ports.
#  - redis-server (Debian's `redis-server`) for the `token_store: redis` tests. Its packaged
#    service is kept from starting the same way and stopped (and disabled) if it runs, so no
#    system redis stays on port 6379; the tests start their own on free ports.
#  - the OAuth2 authorization server `oidc-provider` (npm) for tests/support/oauth-server:
#    `npm ci` there when its node_modules is missing or older than its package-lock.json.
# Idempotent.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
oauth_dir=${repo_root}/tests/support/oauth-server

install_oauth_server() {
  local modules=${oauth_dir}/node_modules
  if [[ -d ${modules}/oidc-provider && ! ${oauth_dir}/package-lock.json -nt ${modules} ]]; then
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "install-test-deps.sh: node and npm are needed for ${oauth_dir} (oidc-provider);" >&2
    echo "  install Node.js >= 20.18 with npm and re-run." >&2
    return 1
  fi
  echo "install-test-deps.sh: npm ci in ${oauth_dir}" >&2
  if ! npm ci --prefix "${oauth_dir}" --no-audit --no-fund --loglevel=error >/dev/null; then
    echo "install-test-deps.sh: npm ci --prefix ${oauth_dir} failed" >&2
    return 1
  fi
  # npm ci may keep an older directory mtime; mark node_modules as newer than the lock file.
  touch "${modules}"
}

have_nginx() { command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]]; }
have_redis() { command -v redis-server >/dev/null 2>&1 || [[ -x /usr/bin/redis-server ]]; }

# The packaged redis service must not keep 6379 busy (whoever installed it).
stop_system_redis() {
  if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    systemctl disable --now redis-server >/dev/null 2>&1 || true
  fi
  if command -v service >/dev/null 2>&1; then
    service redis-server stop >/dev/null 2>&1 || true
  fi
}

install_nginx_and_redis() {
  if have_nginx && have_redis; then
    stop_system_redis
    return 0
  fi

  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps.sh: nginx or redis-server is not installed and this is not root with apt-get;" >&2
    echo "  install them yourself (Debian/Ubuntu: apt-get install nginx-light redis-server) and re-run." >&2
    return 1
  fi

  # Keep the packages' postinst from starting system services on ports 80 and 6379 (invoke-rc.d
  # honours policy-rc.d exit 101 = "action forbidden"). Only when no policy is in place already.
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e ${policy} ]]; then
    printf '#!/bin/sh\nexit 101\n' > "${policy}"
    chmod +x "${policy}"
    trap 'rm -f "${policy}"' EXIT
  fi

  install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1
  }

  if ! have_nginx; then
    echo "install-test-deps.sh: installing nginx with apt-get" >&2
    if ! { install nginx-light || install nginx; }; then
      apt-get update -qq >/dev/null 2>&1 || true
      install nginx-light || install nginx || {
        echo "install-test-deps.sh: apt-get install nginx-light / nginx failed" >&2
        return 1
      }
    fi
    # Belt and braces: if something started the packaged service anyway, stop it.
    if command -v service >/dev/null 2>&1; then
      service nginx stop >/dev/null 2>&1 || true
    fi
  fi

  if ! have_redis; then
    echo "install-test-deps.sh: installing redis-server with apt-get" >&2
    if ! install redis-server; then
      apt-get update -qq >/dev/null 2>&1 || true
      install redis-server || {
        echo "install-test-deps.sh: apt-get install redis-server failed" >&2
        return 1
      }
    fi
  fi
  stop_system_redis

  have_nginx || { echo "install-test-deps.sh: nginx still not found after installing it" >&2; return 1; }
  have_redis || { echo "install-test-deps.sh: redis-server still not found after installing it" >&2; return 1; }
}

# Each installer fails the run (set -e) when it cannot install what the tests need: under
# `make test` a missing dependency is an error, never a skipped test.
install_oauth_server
install_nginx_and_redis
# More installers: one line each, calling the script that installs what a test file needs.
bash "${repo_root}/tests/support/install-cloud-deps.sh"  # botocore + moto: AWS SigV4 tests
bash "${repo_root}/tests/support/install-fleet-deps.sh"
