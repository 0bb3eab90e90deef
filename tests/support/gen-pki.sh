#!/usr/bin/env bash
# Generate the throwaway test PKI used by the e2e tests and the demo.
#
# Usage: tests/support/gen-pki.sh OUTDIR
#
# Produces in OUTDIR (EC P-256 keys, PEM, keys mode 0600):
#   ca.crt ca.key                   test CA (the "right" CA)
#   server.crt server.key           server cert signed by ca
#   other-ca.crt other-ca.key       unrelated CA (for "wrong CA" tests)
#   other-server.crt other-server.key  server cert signed by other-ca
#   client-ca.crt client-ca.key     CA for client certificates (mTLS)
#   client.crt client.key           client cert (CN egress-proxy) signed by client-ca
#   self-signed.crt self-signed.key self-signed server cert (insecure_skip_verify tests)
#
# Server certs are valid for every host name the spec uses plus localhost and
# 127.0.0.1. Idempotent: if every file exists and no cert expires within a day
# nothing is done; otherwise the whole set is regenerated (a partial set could
# mix keys and CAs from different runs). Files are generated in a scratch
# directory and moved into place at the end.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi

out="$1"
days=3650
server_sans="DNS:localhost,DNS:notify.internal.svc,DNS:audit.secure.svc,DNS:analytics.example.com,DNS:erp.internal,DNS:mycompany.salesforce.com,DNS:login.salesforce.com,IP:127.0.0.1"

certs=(ca other-ca client-ca server other-server client self-signed)

complete() {
  local name
  for name in "${certs[@]}"; do
    [[ -s "${out}/${name}.crt" && -s "${out}/${name}.key" ]] || return 1
    openssl x509 -in "${out}/${name}.crt" -noout -checkend 86400 >/dev/null 2>&1 || return 1
  done
}

mkdir -p "${out}"
if complete; then
  exit 0
fi

umask 077
work="$(mktemp -d "${out}/.gen-pki.XXXXXX")"
trap 'rm -rf "${work}"' EXIT

cat >"${work}/ext.cnf" <<CNF
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = ${server_sans}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer

[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = DNS:egress-proxy
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer

[self_signed]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = ${server_sans}
subjectKeyIdentifier = hash
CNF

newkey() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "${work}/$1.key" 2>/dev/null
}

serial() {
  printf '0x%s' "$(openssl rand -hex 16)"
}

# self_signed NAME CN SECTION
self_signed() {
  newkey "$1"
  openssl req -new -key "${work}/$1.key" -subj "/O=egress test/CN=$2" \
    -config /dev/null -out "${work}/$1.csr"
  openssl x509 -req -in "${work}/$1.csr" -signkey "${work}/$1.key" \
    -days "${days}" -sha256 -set_serial "$(serial)" \
    -extfile "${work}/ext.cnf" -extensions "$3" -out "${work}/$1.crt" 2>/dev/null
}

# signed NAME CN SECTION ISSUER
signed() {
  newkey "$1"
  openssl req -new -key "${work}/$1.key" -subj "/O=egress test/CN=$2" \
    -config /dev/null -out "${work}/$1.csr"
  openssl x509 -req -in "${work}/$1.csr" \
    -CA "${work}/$4.crt" -CAkey "${work}/$4.key" -set_serial "$(serial)" \
    -days "${days}" -sha256 -extfile "${work}/ext.cnf" -extensions "$3" \
    -out "${work}/$1.crt" 2>/dev/null
}

self_signed ca "Egress Test CA" ca
self_signed other-ca "Unrelated Test CA" ca
self_signed client-ca "Egress Test Client CA" ca
signed server "localhost" server ca
signed other-server "localhost" server other-ca
signed client "egress-proxy" client client-ca
self_signed self-signed "localhost" self_signed

# Sanity check: chains verify with the intended purpose.
openssl verify -CAfile "${work}/ca.crt" -purpose sslserver "${work}/server.crt" >/dev/null
openssl verify -CAfile "${work}/other-ca.crt" -purpose sslserver "${work}/other-server.crt" >/dev/null
openssl verify -CAfile "${work}/client-ca.crt" -purpose sslclient "${work}/client.crt" >/dev/null

for name in "${certs[@]}"; do
  chmod 0600 "${work}/${name}.key"
  chmod 0644 "${work}/${name}.crt"
  mv -f "${work}/${name}.key" "${out}/${name}.key"
  mv -f "${work}/${name}.crt" "${out}/${name}.crt"
done
