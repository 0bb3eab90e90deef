//! The push listener (role `push`) and push-only mode (`token_store: redis`), driven through
//! the ABI: a signed push lands in the shared token store every egress worker reads; every
//! forged push is refused and changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use egress_core::config::load::load_str;
use egress_core::plan::{FilterConfig, Role};
use egress_core::push::{sha256_hex, PushBody, PushClaims, PushSigner, PUSH_AUDIENCE, PUSH_ISSUER};
use egress_core::secret::Secret;
use jwt_simple::prelude::*;
use proxy_wasm_harness::{Action, Host, Stream, Worker};
use std::time::Duration as StdDuration;

const SEED_FILE: &str = include_str!("../../../examples/config.yaml");
const START_S: u64 = 1_704_067_200; // where the harness clock starts

fn env(name: &str) -> Option<String> {
    Some(format!("v-{name}"))
}

/// The seed as written (token_store: redis, so the egress side only takes pushed tokens).
fn redis_seed() -> FilterConfig {
    FilterConfig::from_config(&load_str(SEED_FILE, &env).unwrap())
}

/// The seed with `token_store: memory` (the egress side also fetches by itself).
fn memory_seed() -> FilterConfig {
    let redis = "  token_store:\n    type: redis\n    redis:\n      address: \"redis:6379\"\n      password: \"${REDIS_PASSWORD}\"\n      db: 1\n      key_prefix: \"egress:tokens:\"\n";
    assert!(SEED_FILE.contains(redis));
    let yaml = SEED_FILE.replace(redis, "  token_store:\n    type: memory\n");
    FilterConfig::from_config(&load_str(&yaml, &env).unwrap())
}

struct Proxy {
    host: Host,
    egress: Worker,
    push: Worker,
    signer: PushSigner,
}

fn proxy(egress_config: FilterConfig) -> Proxy {
    let host = Host::from_file(proxy_wasm_harness::egress_filter_wasm().unwrap()).unwrap();
    let signer = PushSigner::generate();
    let mut push_config = egress_config.clone();
    push_config.role = Role::Push;
    push_config.push_public_key = Some(signer.public_pem());
    let egress = host.worker().unwrap();
    assert!(
        egress
            .start(b"", &serde_json::to_vec(&egress_config).unwrap())
            .unwrap(),
        "{:?}",
        egress.logs()
    );
    let push = host.worker().unwrap();
    assert!(
        push.start(b"", &serde_json::to_vec(&push_config).unwrap())
            .unwrap(),
        "{:?}",
        push.logs()
    );
    Proxy {
        host,
        egress,
        push,
        signer,
    }
}

fn body(target: &str, token: &str, expires_in_s: u64) -> Vec<u8> {
    serde_json::to_vec(&PushBody {
        target: target.into(),
        access_token: Secret::new(token),
        token_type: "Bearer".into(),
        expires_at_ms: (START_S + expires_in_s) * 1000,
    })
    .unwrap()
}

fn send(
    worker: &Worker,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Stream {
    let mut headers = vec![
        (":method", method.to_string()),
        (":path", path.to_string()),
        (":authority", "127.0.0.1:9902".to_string()),
    ];
    if let Some(a) = authorization {
        headers.push(("authorization", a.to_string()));
    }
    let stream = worker.http_request(headers, body.is_empty()).unwrap();
    if !body.is_empty() {
        stream.request_body(body, true).unwrap();
    }
    stream
}

fn status_of(s: &Stream) -> (u32, serde_json::Value) {
    let r = s
        .local_response()
        .expect("the push listener answers every request itself");
    (r.status, serde_json::from_str(&r.body_str()).unwrap())
}

fn push(p: &Proxy, b: &[u8], jti: &str) -> (u32, serde_json::Value) {
    let jwt = p.signer.sign(b, START_S, 60, jti).unwrap();
    status_of(&send(
        &p.push,
        "POST",
        "/v1/tokens",
        Some(&format!("Bearer {jwt}")),
        b,
    ))
}

fn crm(worker: &Worker) -> Stream {
    worker
        .http_request(
            [
                (":method", "GET"),
                (":path", "/egress/crm/Contact/1"),
                (":authority", "egress:8080"),
            ],
            true,
        )
        .unwrap()
}

/// The salesforce token record in shared data (the entry exists from the start, without a
/// record until a token is stored).
fn token_record(host: &Host) -> Option<serde_json::Value> {
    host.shared_data("egress/token/salesforce")
        .and_then(|(v, _)| egress_core::tokens::TokenRecord::from_bytes(&v))
        .map(|_| {
            serde_json::from_slice(&host.shared_data("egress/token/salesforce").unwrap().0).unwrap()
        })
}

#[test]
fn a_signed_push_is_stored_and_every_egress_request_uses_it_without_a_fetch() {
    let p = proxy(redis_seed());
    let (status, reply) = push(&p, &body("salesforce", "pushed-1", 3600), "j1");
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "stored");
    let rec = token_record(&p.host).unwrap();
    assert_eq!(rec["source"], "pushed");
    let s = crm(&p.egress);
    assert_eq!(s.last_action(), Some(Action::Continue));
    assert_eq!(
        s.request_header("authorization").as_deref(),
        Some("Bearer pushed-1")
    );
    p.host.advance_and_tick(StdDuration::from_secs(1)).unwrap();
    assert!(
        p.egress.callouts().is_empty(),
        "push-only mode never fetches"
    );
    // A newer push replaces it.
    let (status, reply) = push(&p, &body("salesforce", "pushed-2", 3600), "j2");
    assert_eq!((status, reply["version"].as_u64()), (200, Some(2)));
    p.host
        .advance_and_tick(StdDuration::from_millis(200))
        .unwrap();
    assert_eq!(
        crm(&p.egress).request_header("authorization").as_deref(),
        Some("Bearer pushed-2")
    );
}

#[test]
fn push_only_mode_answers_503_at_once_without_a_pushed_token_and_never_fetches() {
    let p = proxy(redis_seed());
    let s = crm(&p.egress);
    let r = s.local_response().expect("no waiting in push-only mode");
    assert_eq!(r.status, 503);
    assert!(r.body_str().contains("credentials_unavailable"));
    p.host.advance_and_tick(StdDuration::from_secs(30)).unwrap();
    assert!(p.egress.callouts().is_empty());
    assert!(
        !String::from_utf8_lossy(&serde_json::to_vec(&redis_seed()).unwrap())
            .contains("v-SALESFORCE_CLIENT_SECRET"),
        "redis mode compiles no client secret"
    );
}

#[test]
fn a_pushed_token_is_used_in_memory_mode_too() {
    let p = proxy(memory_seed());
    assert_eq!(push(&p, &body("salesforce", "pushed-m", 3600), "m1").0, 200);
    let s = crm(&p.egress);
    assert_eq!(
        s.request_header("authorization").as_deref(),
        Some("Bearer pushed-m")
    );
}

#[test]
fn every_forged_push_is_refused_with_401_and_changes_nothing() {
    let p = proxy(redis_seed());
    let b = body("salesforce", "evil", 3600);
    let other = PushSigner::generate();
    let expired = p.signer.sign(&b, START_S - 600, 60, "e1").unwrap();
    let wrong_key = other.sign(&b, START_S, 60, "w1").unwrap();
    let wrong_body = p.signer.sign(b"{}", START_S, 60, "b1").unwrap();
    // Wrong audience and alg none, built by hand.
    let kp = Ed25519KeyPair::from_pem(&p.signer.to_pem()).unwrap();
    let mut claims = Claims::with_custom_claims(
        PushClaims {
            body_sha256: sha256_hex(&b),
        },
        Duration::from_secs(60),
    )
    .with_issuer(PUSH_ISSUER)
    .with_audience("not-the-push-listener")
    .with_jwt_id("a1");
    claims.issued_at = Some(Duration::from_secs(START_S));
    claims.expires_at = Some(Duration::from_secs(START_S + 60));
    let wrong_aud = kp.sign(claims).unwrap();
    use base64::Engine as _;
    let enc = |x: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(x);
    let none = format!(
        "{}.{}.",
        enc(r#"{"alg":"none","typ":"JWT"}"#),
        enc(&format!(
            r#"{{"iss":"{PUSH_ISSUER}","aud":"{PUSH_AUDIENCE}","iat":{START_S},"exp":{},"jti":"n1","body_sha256":"{}"}}"#,
            START_S + 60,
            sha256_hex(&b)
        ))
    );
    let cases: Vec<(&str, Option<String>)> = vec![
        ("unsigned", None),
        ("not a jwt", Some("Bearer abc".into())),
        ("expired", Some(format!("Bearer {expired}"))),
        ("wrong key", Some(format!("Bearer {wrong_key}"))),
        ("wrong body", Some(format!("Bearer {wrong_body}"))),
        ("wrong audience", Some(format!("Bearer {wrong_aud}"))),
        ("alg none", Some(format!("Bearer {none}"))),
    ];
    for (what, auth) in cases {
        let (status, reply) = status_of(&send(&p.push, "POST", "/v1/tokens", auth.as_deref(), &b));
        assert_eq!(status, 401, "{what}: {reply}");
        assert_eq!(reply["error"], "push_rejected", "{what}");
        assert!(
            token_record(&p.host).is_none(),
            "{what} changed the token store"
        );
    }
    // Replayed: the first use works, the same JWT again is refused.
    let jwt = p.signer.sign(&b, START_S, 60, "r1").unwrap();
    let auth = format!("Bearer {jwt}");
    assert_eq!(
        status_of(&send(&p.push, "POST", "/v1/tokens", Some(&auth), &b)).0,
        200
    );
    let version = token_record(&p.host).unwrap()["version"].clone();
    let (status, reply) = status_of(&send(&p.push, "POST", "/v1/tokens", Some(&auth), &b));
    assert_eq!(status, 401, "replay: {reply}");
    assert_eq!(token_record(&p.host).unwrap()["version"], version);
    // Nothing was logged with the token.
    for w in [&p.push, &p.egress] {
        for l in w.logs() {
            assert!(!l.message.contains("evil"), "{}", l.message);
        }
    }
}

#[test]
fn bad_push_bodies_are_refused_with_400() {
    let p = proxy(redis_seed());
    for (what, b) in [
        ("unknown target", body("nope", "t", 3600)),
        ("not an oauth2 target", body("notification", "t", 3600)),
        ("bad token", body("salesforce", "a\r\nb", 3600)),
        ("expired token", body("salesforce", "t", 0)),
    ] {
        let (status, reply) = push(&p, &b, &format!("bad-{what}"));
        assert_eq!(status, 400, "{what}: {reply}");
    }
    assert!(token_record(&p.host).is_none());
}

#[test]
fn status_lists_source_age_and_expiry_but_never_the_token() {
    let p = proxy(redis_seed());
    push(&p, &body("salesforce", "secret-status-token", 3600), "s1");
    p.host.advance(StdDuration::from_secs(10));
    let jwt = p.signer.sign(b"", START_S + 10, 60, "s2").unwrap();
    let s = send(
        &p.push,
        "GET",
        "/v1/status",
        Some(&format!("Bearer {jwt}")),
        b"",
    );
    let r = s.local_response().unwrap();
    assert_eq!(r.status, 200);
    assert!(!r.body_str().contains("secret-status-token"));
    let v: serde_json::Value = serde_json::from_str(&r.body_str()).unwrap();
    let t = &v["targets"][0];
    assert_eq!(
        (
            t["target"].as_str(),
            t["source"].as_str(),
            t["valid"].as_bool()
        ),
        (Some("salesforce"), Some("pushed"), Some(true))
    );
    assert_eq!(t["age_ms"], 10_000);
    assert_eq!(t["expires_in_ms"], 3_590_000);
    // Unauthenticated status is refused too.
    assert_eq!(
        status_of(&send(&p.push, "GET", "/v1/status", None, b"")).0,
        401
    );
}
