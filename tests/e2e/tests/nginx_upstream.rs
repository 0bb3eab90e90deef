//! The egress proxy against a real, third-party upstream: nginx (not our Python stand-ins)
//! serves the notification target over TLS and the audit target over mutual TLS, and echoes
//! what arrived. `egressctl compile` of the demo config points DEMO_NOTIFY_PORT and
//! DEMO_AUDIT_PORT at nginx; the other targets point at ports with nothing listening (these
//! tests never route to them). Real Envoy 1.40 runs the built `egress_filter.wasm`.
//!
//! Needs nginx (`bash tests/support/install-test-deps.sh`, run by `make deps`). Without it the
//! tests fail, naming that install step (nothing is skipped).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anyhow::{Context, Result};
use egress_e2e::*;
use serde_json::Value;
use std::process::Command;

const NOTIFICATION_API_KEY: &str = "SECRET-nginx-notify-key";

/// The demo config's secrets; only the notification key matters here.
const SECRETS: [(&str, &str); 7] = [
    ("SALESFORCE_CLIENT_ID", "e2e-sf-client"),
    ("SALESFORCE_CLIENT_SECRET", "SECRET-sf-client-secret"),
    ("NOTIFICATION_API_KEY", NOTIFICATION_API_KEY),
    ("ANALYTICS_BEARER_TOKEN", "SECRET-analytics-token"),
    ("ERP_USERNAME", "erp-user"),
    ("ERP_PASSWORD", "SECRET-erp-password"),
    ("REDIS_PASSWORD", "SECRET-redis"),
];

/// nginx as notification (TLS) and audit (mTLS) upstreams, Envoy with the compiled demo config.
struct Proxy {
    notify: Nginx,
    audit: Nginx,
    envoy: Envoy,
    base: String,
    _state: TempDir,
}

impl Proxy {
    fn start(engine: Engine) -> Result<Self> {
        let pki = Pki::generate()?;
        let notify = Nginx::start(NginxOpts::new("notification", pki.server()))?;
        let audit =
            Nginx::start(NginxOpts::new("audit", pki.server()).client_ca(pki.client_ca_cert()))?;
        let listen = free_port()?;
        let admin = free_port()?;
        let state = scratch_dir()?;
        let mut env: Vec<(String, String)> = SECRETS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.push(("DEMO_NOTIFY_PORT".into(), notify.port().to_string()));
        env.push(("DEMO_AUDIT_PORT".into(), audit.port().to_string()));
        // Unused targets: free ports nobody listens on.
        for var in [
            "DEMO_SALESFORCE_PORT",
            "DEMO_SALESFORCE_LOGIN_PORT",
            "DEMO_ANALYTICS_PORT",
            "DEMO_ERP_PORT",
        ] {
            env.push((var.into(), free_port()?.to_string()));
        }
        env.push(("DEMO_LISTEN".into(), format!("127.0.0.1:{listen}")));
        env.push(("DEMO_PKI".into(), pki.dir().display().to_string()));
        env.push(("DEMO_STATE".into(), state.path().display().to_string()));

        let out = state.path().join("out");
        let config = repo_root().join("examples/demo/config.yaml");
        let compiled = compile_command(&config, &out, admin, engine)?
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .context("running egressctl compile")?;
        let envoy = envoy_from_compile(&compiled, &out, admin, &[]).context(engine)?;
        Ok(Self {
            notify,
            audit,
            envoy,
            base: format!("http://127.0.0.1:{listen}"),
            _state: state,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// nginx's JSON echo of a request the proxy forwarded; panics with nginx's logs otherwise.
fn nginx_echo(r: &Response, upstream: &Nginx, envoy: &Envoy) -> Value {
    assert_eq!(
        r.status,
        200,
        "expected nginx's echo, got {} {}\n-- nginx {} access log:\n{}\n-- nginx error log:\n{}\n-- envoy log:\n{}",
        r.status,
        r.body,
        upstream.name(),
        upstream.access_log(),
        upstream.error_log(),
        envoy.log_tail()
    );
    let echo = r.json().unwrap();
    assert_eq!(echo["server"], "nginx", "not nginx's echo: {echo}");
    echo
}

fn notify_route_reaches_nginx_over_verified_tls_with_api_key_injected_and_caller_authorization_removed(
    engine: Engine,
) {
    let p = Proxy::start(engine).unwrap();
    let r = Request::post(&p.url("/egress/notify/email"))
        .header("authorization", "Bearer caller-token")
        .header("x-api-key", "caller-key")
        .json(&serde_json::json!({"to": "ops@example.com"}))
        .send()
        .unwrap();
    let echo = nginx_echo(&r, &p.notify, &p.envoy);
    assert_eq!(echo["method"], "POST");
    // strip_prefix "/egress/notify" leaves "/email".
    assert_eq!(echo["uri"], "/email");
    // The configured key replaced the caller's.
    assert_eq!(echo["x_api_key"], NOTIFICATION_API_KEY);
    // The caller's credentials never reach the upstream (nginx echoes an absent header as "").
    assert_eq!(
        echo["authorization"], "",
        "caller authorization leaked: {echo}"
    );
    // Envoy sent the target's tls.server_name as SNI (and verified nginx's certificate
    // for that name against the test CA, or there would be no echo).
    assert_eq!(echo["sni"], "notify.internal.svc");
    // No client certificate on a plain-TLS target.
    assert_eq!(echo["client_verify"], "NONE");
}

fn audit_route_presents_the_proxy_client_certificate_that_nginx_verifies_against_the_client_ca(
    engine: Engine,
) {
    let p = Proxy::start(engine).unwrap();
    let r = Request::post(&p.url("/egress/audit/events"))
        .json(&serde_json::json!({"event": "login"}))
        .send()
        .unwrap();
    let echo = nginx_echo(&r, &p.audit, &p.envoy);
    assert_eq!(echo["uri"], "/events");
    assert_eq!(echo["sni"], "audit.secure.svc");
    // nginx itself verified the client certificate Envoy presented.
    assert_eq!(echo["client_verify"], "SUCCESS", "echo: {echo}");
    let dn = echo["client_dn"].as_str().unwrap_or_default();
    assert!(
        dn.contains(&format!("CN={CLIENT_CERT_CN}")),
        "client DN {dn:?} lacks CN={CLIENT_CERT_CN}"
    );
    // mTLS targets get no credential header.
    assert_eq!(echo["authorization"], "");
    assert_eq!(echo["x_api_key"], "");
}

/// `curl` straight at nginx (not through the proxy): (HTTP status, body).
fn curl(url: &str, extra: &[&str]) -> (u16, String) {
    let pki = Pki::generate().unwrap();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(pki.ca_cert())
        .args(extra)
        .arg(url)
        .output()
        .expect("running curl (is it installed?)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {url} failed ({}): {}{}",
        out.status,
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_owned())
}

#[test]
fn nginx_audit_upstream_really_requires_a_client_certificate() {
    let pki = Pki::generate().unwrap();
    let audit = Nginx::start(NginxOpts::new("audit", pki.server()).client_ca(pki.client_ca_cert()))
        .unwrap();

    // Without a client certificate: nginx's own 400, not the echo.
    let (status, body) = curl(&audit.url("/events"), &[]);
    assert_eq!(status, 400, "body: {body}");
    assert!(
        body.contains("No required SSL certificate was sent"),
        "body: {body}"
    );
    assert!(!body.contains("\"server\":\"nginx\""), "body: {body}");

    // With the proxy's client certificate: the echo, verified. So the audit echo through the
    // proxy comes from the certificate Envoy presents, and nothing else.
    let client = pki.client();
    let (status, body) = curl(
        &audit.url("/events"),
        &[
            "--cert",
            client.cert.to_str().unwrap(),
            "--key",
            client.key.to_str().unwrap(),
            "-H",
            "Authorization: Bearer direct-token",
            "-H",
            "X-API-Key: direct-key",
        ],
    );
    assert_eq!(status, 200, "body: {body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["client_verify"], "SUCCESS");
    // The echo does show headers that arrive, so an empty `authorization` through the proxy
    // means the header was removed, not that the echo cannot see it.
    assert_eq!(echo["authorization"], "Bearer direct-token");
    assert_eq!(echo["x_api_key"], "direct-key");
}

engine_tests!(
    notify_route_reaches_nginx_over_verified_tls_with_api_key_injected_and_caller_authorization_removed,
    audit_route_presents_the_proxy_client_certificate_that_nginx_verifies_against_the_client_ca,
);
