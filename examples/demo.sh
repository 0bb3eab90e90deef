#!/usr/bin/env bash
# The demo: the spec's example (section 1 config, section 3 requests) against local stand-ins
# for the external services, through a real Envoy running the egress filter.
#
#   make demo            (builds everything, then runs this)
#   DEMO_KEEP=1 make demo  leaves the proxy running until Ctrl-C, for your own curl calls.
#
# It starts: the stand-ins (examples/standins/standin.py, TLS with a generated test CA; audit
# requires a client certificate; the ERP has a self-signed one), Envoy via `egressctl up`,
# then sends the section 3 requests and shows what each upstream received; then restarts the
# proxy with callers required (examples/demo/callers.yaml) and shows an allowed and a refused caller.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
demo="${root}/.demo"
export DEMO_PKI="${demo}/pki" DEMO_STATE="${demo}/state"
mkdir -p "${DEMO_STATE}"
: > "${DEMO_STATE}/requests.log"

# The seed's variables. Demo values only: the upstream echo shows them arriving.
export SALESFORCE_CLIENT_ID="demo-client" SALESFORCE_CLIENT_SECRET="demo-client-secret"
export NOTIFICATION_API_KEY="demo-notify-key" ANALYTICS_BEARER_TOKEN="demo-analytics-token"
export ERP_USERNAME="erp-demo" ERP_PASSWORD="erp-demo-password" REDIS_PASSWORD="unused"

ctl="${root}/target/debug/egressctl"
listen="${DEMO_LISTEN:-127.0.0.1:8080}"
admin="127.0.0.1:9901"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "${pid}" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

bash "${root}/tests/support/gen-pki.sh" "${DEMO_PKI}" >/dev/null
sed "s#@PKI@#${DEMO_PKI}#g" "${root}/examples/demo/services.json.in" > "${DEMO_STATE}/services.json"

echo "== starting stand-ins for the external services"
python3 "${root}/examples/standins/standin.py" --config "${DEMO_STATE}/services.json" > "${DEMO_STATE}/standins.out" 2>"${DEMO_STATE}/standins.err" &
pids+=($!)
for _ in $(seq 1 100); do
  [[ $(grep -c '^READY' "${DEMO_STATE}/standins.out" 2>/dev/null || true) -ge 6 ]] && break
  sleep 0.1
done
sed 's/^READY /   ready: /' "${DEMO_STATE}/standins.out"

echo "== egressctl validate / routes"
"${ctl}" validate "${root}/examples/demo/config.yaml"
"${ctl}" routes "${root}/examples/demo/config.yaml"

# Starts `egressctl up CONFIG` (Envoy with the egress filter) and waits until it is ready.
proxy_pid=""
start_proxy() {
  local config="$1"
  echo
  echo "== egressctl up $(basename "${config}") (Envoy with the egress filter on ${listen}, admin ${admin})"
  "${ctl}" up "${config}" --out "${DEMO_STATE}" --admin "${admin}" > "${DEMO_STATE}/envoy.out" 2> "${DEMO_STATE}/envoy.err" &
  proxy_pid=$!
  pids+=("${proxy_pid}")
  for _ in $(seq 1 150); do
    curl -fs "http://${admin}/ready" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "Envoy did not become ready; its log:" >&2
  tail -n 30 "${DEMO_STATE}/envoy.err" >&2
  exit 1
}

# Stops the proxy start_proxy started and waits until its admin port is free again.
stop_proxy() {
  kill "${proxy_pid}" 2>/dev/null || true
  wait "${proxy_pid}" 2>/dev/null || true
  for _ in $(seq 1 100); do
    curl -s "http://${admin}/ready" >/dev/null 2>&1 || return 0
    sleep 0.1
  done
}

start_proxy "${root}/examples/demo/config.yaml"

# Sends one request (with `Authorization: Bearer ${caller_token}` when set), prints the proxy's status and what the upstream received.
as_caller="" caller_token=""
call() {
  local method="$1" path="$2" body="${3:-}"
  echo
  echo "-> ${method} http://${listen}${path}${as_caller:+   (${as_caller})}"
  local args=(-s -o "${DEMO_STATE}/resp.json" -w '%{http_code}' -X "${method}" "http://${listen}${path}")
  [[ -n "${caller_token}" ]] && args+=(-H "Authorization: Bearer ${caller_token}")
  [[ -n "${body}" ]] && args+=(-H 'Content-Type: application/json' -d "${body}")
  local code
  code=$(curl "${args[@]}")
  echo "<- ${code}"
  python3 - "${DEMO_STATE}/resp.json" <<'PY'
import json, sys
raw = open(sys.argv[1]).read()
try:
    r = json.loads(raw)
except ValueError:
    print("   (no JSON body)" if not raw else "   " + raw)
    sys.exit(0)
if "service" in r:
    h = r["headers"]
    print(f"   upstream {r['service']} received: {r['method']} {r['path']}" + (f"?{r['query']}" if r["query"] else ""))
    print(f"     host: {h.get('host')}")
    for name in ("x-api-key", "authorization"):
        if name in h:
            print(f"     {name}: {h[name]}")
    if r.get("client_cert"):
        print(f"     client certificate: CN={r['client_cert']}")
else:
    print("   proxy answered: " + json.dumps(r))
PY
}

echo
echo "== the spec's section 3 requests"
call POST /egress/crm/Contact '{"FirstName":"John","LastName":"Doe","Email":"john@example.com"}'
call GET /egress/crm/Contact/003xx000004TmiQAAS
call POST /egress/notify/email '{"to":"user@example.com","subject":"Welcome!","body":"Hello and welcome!","type":"welcome"}'
call POST /egress/audit/events '{"actor":"admin@example.com","action":"create","resource":"user","resource_id":"user-123"}'
call GET /egress/analytics/users/stats
call GET /egress/erp/customers/123
echo
echo "== refused requests"
call GET /egress/notify/email
call GET /egress/unknown/x
call GET '/egress/crm/..%2f..%2fadmin'

sleep 1.5 # Envoy flushes its access log about once a second
echo
echo "== request log (${DEMO_STATE}/requests.log)"
cat "${DEMO_STATE}/requests.log" 2>/dev/null || true

# Second stage: callers must prove who they are (examples/demo/callers.yaml): HS256 JWTs from
# seed 001's gateway, and each target open only to the roles its `allow` names.
echo
echo "== callers: who may spend which credential (examples/demo/callers.yaml)"
stop_proxy
export DEMO_JWT_SECRET="demo-gateway-shared-secret-0123456789"
: > "${DEMO_STATE}/callers-requests.log"
"${ctl}" routes "${root}/examples/demo/callers.yaml"
start_proxy "${root}/examples/demo/callers.yaml"

# An HS256 JWT as the gateway (issuer auth-service, audience api-gateway) would sign it.
gateway_jwt() {
  python3 - "$1" "$2" <<'PY'
import base64, hashlib, hmac, json, os, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
claims = {"iss": "auth-service", "aud": "api-gateway", "sub": sys.argv[1],
          "roles": sys.argv[2].split(","), "iat": now, "exp": now + 600}
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
sig = hmac.new(os.environ["DEMO_JWT_SECRET"].encode(), head.encode(), hashlib.sha256).digest()
print(head + "." + b64(sig))
PY
}

as_caller="as user-service, roles crm" caller_token="$(gateway_jwt user-service crm)"
call GET /egress/crm/Contact/003xx000004TmiQAAS
echo "   (the caller's JWT was removed: the CRM got the proxy's OAuth2 token, not the caller's)"
as_caller="as report-service, roles reports: refused" caller_token="$(gateway_jwt report-service reports)"
call GET /egress/crm/Contact/003xx000004TmiQAAS
as_caller="no token: refused" caller_token=""
call POST /egress/notify/email '{"to":"user@example.com","subject":"Hi"}'
as_caller="" caller_token=""

sleep 1.5
echo
echo "== request log with callers (${DEMO_STATE}/callers-requests.log)"
cat "${DEMO_STATE}/callers-requests.log" 2>/dev/null || true

if [[ "${DEMO_KEEP:-}" == "1" ]]; then
  echo
  echo "Proxy running on http://${listen} with callers required (metrics: /metrics, health: /health). Ctrl-C stops it."
  wait
fi
