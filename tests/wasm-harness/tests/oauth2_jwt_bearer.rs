//! The egress filter fetching `oauth2_jwt_bearer` tokens itself (inline issuer, subject and
//! key), driven through the proxy-wasm ABI: the token request it sends (RFC 7523 section 2.1
//! form, no client authentication), the assertion's claims checked with the public key, a new
//! `jti` on every fetch, the token injected, and neither key nor assertion in any log.
//!
//! Build the module first: `cargo build -p egress-filter --target wasm32-wasip1 --release`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod oauth2_support;

use egress_core::build::{filter_config, BuildOptions};
use egress_core::config::load::load_str;
use egress_core::secret::Secret;
use jwt_simple::prelude::*;
use oauth2_support::*;

const TOKEN_URL: &str = "https://login.salesforce.com/services/oauth2/token";
const ISSUER: &str = "egress@proj.iam.gserviceaccount.com";
const SUBJECT: &str = "svc-reports";

/// The seed with salesforce switched to `oauth2_jwt_bearer` (inline key), built as
/// `egressctl compile` builds it (the key read and inlined).
fn jwt_bearer_config(key_pem: &str) -> Vec<u8> {
    let cc = "        type: oauth2_client_credentials\n        token_url: \"https://login.salesforce.com/services/oauth2/token\"\n        client_id: \"${SALESFORCE_CLIENT_ID}\"\n        client_secret: \"${SALESFORCE_CLIENT_SECRET}\"\n";
    let jb = format!(
        "        type: oauth2_jwt_bearer\n        token_url: \"{TOKEN_URL}\"\n        issuer: \"{ISSUER}\"\n        subject: {SUBJECT}\n        private_key: keys/sa.pem\n        key_id: kid-7\n"
    );
    let yaml = debug_seed();
    assert!(yaml.contains(cc), "the seed's salesforce auth moved");
    let config = load_str(&yaml.replace(cc, &jb), &env_lookup).unwrap();
    let opts = BuildOptions {
        private_keys: [("salesforce".to_string(), Secret::new(key_pem))].into(),
        ..Default::default()
    };
    serde_json::to_vec(&filter_config(&config, &opts)).unwrap()
}

/// The form fields of a token request body.
fn form(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8(body.to_vec()).unwrap();
    text.split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            let decode = |s: &str| {
                let s = s.replace('+', " ");
                let mut out = Vec::new();
                let b = s.as_bytes();
                let mut i = 0;
                while i < b.len() {
                    if b[i] == b'%' {
                        out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                        i += 3;
                    } else {
                        out.push(b[i]);
                        i += 1;
                    }
                }
                String::from_utf8(out).unwrap()
            };
            (decode(k), decode(v))
        })
        .collect()
}

/// Checks one fetch's request and assertion; returns the assertion's `jti`.
fn check_request(fetch: &proxy_wasm_harness::Callout, key: &RS256KeyPair, now_s: u64) -> String {
    assert_eq!(fetch.upstream, CLUSTER);
    assert_eq!(fetch.header(":method"), Some("POST"));
    assert_eq!(fetch.header(":path"), Some("/services/oauth2/token"));
    assert_eq!(fetch.header(":authority"), Some("login.salesforce.com"));
    assert_eq!(fetch.header("authorization"), None);
    let fields = form(&fetch.body);
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["grant_type", "assertion", "scope"], "{fields:?}");
    assert_eq!(fields[0].1, "urn:ietf:params:oauth:grant-type:jwt-bearer");
    assert_eq!(fields[2].1, "api refresh_token");
    let assertion = &fields[1].1;
    let opts = VerificationOptions {
        time_tolerance: Some(Duration::from_secs(10 * 365 * 86_400)),
        allowed_issuers: Some([ISSUER.to_string()].into()),
        allowed_audiences: Some([TOKEN_URL.to_string()].into()),
        ..Default::default()
    };
    let claims = key
        .public_key()
        .verify_token::<serde_json::Value>(assertion, Some(opts))
        .unwrap();
    assert_eq!(claims.subject.as_deref(), Some(SUBJECT));
    // The harness clock, not the machine's: the filter signs with the host's time.
    assert_eq!(claims.issued_at.map(|d| d.as_secs()), Some(now_s));
    let lifetime = claims.expires_at.unwrap().as_secs() - now_s;
    assert!((1..=300).contains(&lifetime), "exp {lifetime}s after iat");
    assert_eq!(claims.custom["scope"], "api refresh_token");
    let meta = Token::decode_metadata(assertion).unwrap();
    assert_eq!((meta.algorithm(), meta.key_id()), ("RS256", Some("kid-7")));
    claims.jwt_id.expect("a jti")
}

#[test]
fn the_filter_sends_a_signed_jwt_bearer_grant_and_injects_the_token() {
    let key = RS256KeyPair::generate(2048).unwrap();
    let pem = key.to_pem().unwrap();
    let host = filter_host();
    let worker = host.worker().unwrap();
    assert!(
        worker.start(b"", &jwt_bearer_config(&pem)).unwrap(),
        "config rejected: {:?}",
        worker.logs()
    );
    let first = crm(&worker);
    expect_waiting(&first);
    tick(&host);
    let (_, fetch) = the_fetch(&host);
    let jti_1 = check_request(&fetch, &key, now_ms(&host) / 1000);
    let assertion_1 = form(&fetch.body)[1].1.clone();
    grant(&worker, &fetch, "tok-jb-1", Some(600));
    expect_resumed_with(&first, "tok-jb-1");

    // The refresh ahead of expiry (seed: 300s before) signs a new assertion with a new jti.
    let (_, again) = tick_until_fetch(&host, 400_000);
    let jti_2 = check_request(&again, &key, now_ms(&host) / 1000);
    assert_ne!(jti_1, jti_2);
    let assertion_2 = form(&again.body)[1].1.clone();
    grant(&worker, &again, "tok-jb-2", Some(600));
    expect_sent_with(&crm(&worker), "tok-jb-2");
    assert_eq!(metric(&host, TOKENS_FETCHED), 2);

    let key_body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert_logs_clean(
        &host,
        &[
            "tok-jb-1",
            "tok-jb-2",
            &assertion_1,
            &assertion_2,
            &key_body[..64],
        ],
    );
}

#[test]
fn a_bad_inline_key_refuses_the_config_without_echoing_the_key() {
    let host = filter_host();
    let worker = host.worker().unwrap();
    let bad = "-----BEGIN PRIVATE KEY-----\nNOT-A-KEY-SECRET-b64\n-----END PRIVATE KEY-----\n";
    assert!(!worker.start(b"", &jwt_bearer_config(bad)).unwrap());
    for line in worker.logs() {
        assert!(
            !line.message.contains("NOT-A-KEY-SECRET"),
            "{}",
            line.message
        );
    }
    assert!(
        worker
            .logs()
            .iter()
            .any(|l| l.message.contains("salesforce")),
        "the refusal names the target: {:?}",
        worker.logs()
    );
}
