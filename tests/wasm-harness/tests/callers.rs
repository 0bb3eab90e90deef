//! Caller identity in the built filter: the SPIFFE ID from the connection property
//! `connection.uri_san_peer_certificate`, JWTs from headers and cookies, the verified-token
//! cache, refusals (401/403 JSON, counted per target, never a token fetch), and the caller's
//! token taken off the request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod callers_support;

use callers_support::{caller, hs256_token, refused, secret_env};
use egress_core::config::load::load_str;
use egress_core::plan::FilterConfig;
use proxy_wasm_harness::{Host, Stream, Worker};

const CONFIG: &str = r#"
http: { addr: ":8080" }
egress:
  callers:
    mtls: { server_cert: s.crt, server_key: s.key, client_ca: ca.crt, require_client_cert: false }
    jwt:
      - issuer: auth-service
        audiences: [egress-proxy]
        algorithms: [HS256]
        secret: "${JWT_SECRET}"
        from_cookies: [access_token]
  targets:
    crm:
      url: http://127.0.0.1:9/api
      auth: { type: api_key, header: X-Api-Key, key: crm-key-123 }
      allow:
        spiffe_ids: ["spiffe://jia.app/billing/*"]
        roles: [crm]
    sso:
      url: https://sso.example.com
      auth:
        type: oauth2_client_credentials
        token_url: https://sso.example.com/token
        client_id: c
        client_secret: s
      allow: { subjects: [user-service] }
  routes:
    - { path_prefix: /egress/crm, target: crm }
    - { path_prefix: /egress/sso, target: sso }
"#;

fn worker() -> (Host, Worker) {
    let config = load_str(CONFIG, &secret_env).unwrap_or_else(|e| panic!("{e}"));
    let json = serde_json::to_vec(&FilterConfig::from_config(&config)).unwrap();
    let wasm = proxy_wasm_harness::egress_filter_wasm().unwrap_or_else(|e| panic!("{e}"));
    let host = Host::from_file(wasm).unwrap();
    let worker = host.worker().unwrap();
    assert!(worker.start(b"", &json).unwrap(), "{:?}", worker.logs());
    (host, worker)
}

fn send(worker: &Worker, path: &str, spiffe: Option<&str>, extra: &[(&str, &str)]) -> Stream {
    let stream = worker.create_stream().unwrap();
    if let Some(id) = spiffe {
        stream.set_property(&["connection", "uri_san_peer_certificate"], id.as_bytes());
    }
    let mut headers: Vec<(&str, &str)> = vec![
        (":method", "GET"),
        (":path", path),
        (":scheme", "http"),
        (":authority", "egress:8080"),
    ];
    headers.extend(extra);
    stream.request_headers(headers, true).unwrap();
    stream
}

#[test]
fn spiffe_id_from_the_connection_property_is_the_caller() {
    let (host, worker) = worker();
    let ok = send(
        &worker,
        "/egress/crm/x",
        Some("spiffe://jia.app/billing/invoices"),
        &[],
    );
    assert_eq!(ok.local_response(), None);
    assert_eq!(
        ok.request_header("x-api-key").as_deref(),
        Some("crm-key-123")
    );
    assert_eq!(
        caller(&ok).as_deref(),
        Some("spiffe://jia.app/billing/invoices")
    );

    let evil = send(
        &worker,
        "/egress/crm/x",
        Some("spiffe://jia.app/billing-evil"),
        &[],
    );
    refused(&evil, 403, "forbidden");
    assert_eq!(
        caller(&evil).as_deref(),
        Some("spiffe://jia.app/billing-evil")
    );
    assert_eq!(host.metric("egress.crm.caller_refused_403"), Some(1));

    let anon = send(&worker, "/egress/crm/x", None, &[]);
    let reply = refused(&anon, 401, "unauthenticated");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    assert_eq!(host.metric("egress.crm.caller_refused_401"), Some(1));
}

#[test]
fn jwt_from_header_or_cookie_is_verified_cached_and_never_forwarded() {
    let (host, worker) = worker();
    let t = hs256_token(&host, "svc-a", &["crm"], 300);
    let bearer = format!("Bearer {t}");
    let s = send(
        &worker,
        "/egress/crm/x",
        None,
        &[("authorization", &bearer)],
    );
    assert_eq!(s.local_response(), None, "{:?}", worker.logs());
    assert_eq!(s.request_header("authorization"), None);
    assert_eq!(caller(&s).as_deref(), Some("auth-service/svc-a"));

    let cookie = format!("theme=dark; access_token={t}; lang=en");
    let s = send(&worker, "/egress/crm/x", None, &[("cookie", &cookie)]);
    assert_eq!(s.local_response(), None);
    assert_eq!(
        s.request_header("cookie").as_deref(),
        Some("theme=dark; lang=en")
    );
    let all = format!("{:?}", s.request_header_map());
    assert!(!all.contains(&t), "the caller's token left: {all}");

    // A tampered token is refused 401 invalid_token; the reason is logged, not sent.
    let mut forged = t.clone();
    forged.push('x');
    let bad = format!("Bearer {forged}");
    let s = send(&worker, "/egress/crm/x", None, &[("authorization", &bad)]);
    let reply = refused(&s, 401, "invalid_token");
    assert!(reply
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
    assert!(worker
        .logs()
        .iter()
        .any(|l| l.message.contains("caller refused") && l.message.contains("reason")));

    // Past exp the cached verdict is gone: the same token is refused.
    host.advance(std::time::Duration::from_secs(400));
    let s = send(
        &worker,
        "/egress/crm/x",
        None,
        &[("authorization", &bearer)],
    );
    refused(&s, 401, "invalid_token");
}

#[test]
fn a_refused_caller_never_starts_a_token_fetch() {
    let (host, worker) = worker();
    let t = hs256_token(&host, "intruder", &["crm"], 300);
    let bearer = format!("Bearer {t}");
    let callouts_before = worker.callouts().len();
    let s = send(
        &worker,
        "/egress/sso/x",
        None,
        &[("authorization", &bearer)],
    );
    refused(&s, 403, "forbidden");
    let s = send(&worker, "/egress/sso/x", None, &[]);
    refused(&s, 401, "unauthenticated");
    assert_eq!(
        worker.callouts().len(),
        callouts_before,
        "a refused request fetched a token"
    );
    assert_eq!(host.metric("egress.sso.caller_refused_403"), Some(1));
}
