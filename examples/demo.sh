#!/usr/bin/env bash
# The demo: the spec's example (section 1 config, section 3 requests) against local stand-ins
# for the external services, through a real Envoy running the egress filter.
#
#   make demo            (builds everything, then runs this)
#   DEMO_KEEP=1 make demo  leaves the proxy running until Ctrl-C, for your own curl calls.
#
# It starts: the stand-ins (examples/standins/standin.py, TLS with a generated test CA; audit
# requires a client certificate; the ERP has a self-signed one), Envoy via `egressctl up`,
# then sends the section 3 requests and shows what each upstream received.
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

echo "== egressctl up (Envoy with the egress filter on ${listen}, admin ${admin})"
"${ctl}" up "${root}/examples/demo/config.yaml" --out "${DEMO_STATE}" --admin "${admin}" > "${DEMO_STATE}/envoy.out" 2> "${DEMO_STATE}/envoy.err" &
pids+=($!)
for _ in $(seq 1 150); do
  curl -fs "http://${admin}/ready" >/dev/null 2>&1 && break
  sleep 0.2
done
if ! curl -fs "http://${admin}/ready" >/dev/null 2>&1; then
  echo "Envoy did not become ready; its log:" >&2
  tail -n 30 "${DEMO_STATE}/envoy.err" >&2
  exit 1
fi

# Sends one request, prints the proxy's status and what the upstream received.
call() {
  local method="$1" path="$2" body="${3:-}"
  echo
  echo "-> ${method} http://${listen}${path}"
  local args=(-s -o "${DEMO_STATE}/resp.json" -w '%{http_code}' -X "${method}" "http://${listen}${path}")
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

if [[ "${DEMO_KEEP:-}" == "1" ]]; then
  echo
  echo "Proxy running on http://${listen} (metrics: /metrics, health: /health). Ctrl-C stops it."
  wait
fi
