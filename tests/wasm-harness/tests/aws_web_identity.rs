//! `aws_sigv4` with `web_identity` in the built filter, through the proxy-wasm ABI: temporary
//! credentials arrive only by a signed `aws_credentials` push to the push listener; the egress
//! worker signs with them (session token included); before they arrive and after they
//! expire, requests get 503 `credentials_unavailable` and nothing is forwarded unsigned.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use egress_core::config::load::load_str;
use egress_core::plan::{FilterConfig, Role};
use egress_core::push::PushSigner;
use egress_core::secret::Secret;
use egress_core::sigv4::pushed::{AwsPushBody, AWS_PUSH_KIND};
use egress_core::sigv4::{self, AwsKeys, Payload};
use proxy_wasm_harness::{Action, Host, Stream, Worker};
use std::time::{Duration, UNIX_EPOCH};

/// 2027-01-15T08:00:00Z.
const NOW_S: u64 = 1_800_000_000;
const SECRET: &str = "tmpSECRETwJalrXUtnFEMI";
const SESSION: &str = "FQoGZXIvYXdzSESSION+tok/en=";

fn config(payload: &str) -> FilterConfig {
    let yaml = format!(
        "http:\n  addr: \":8080\"\negress:\n  targets:\n    s3:\n      url: http://s3.local:9000/base\n      auth:\n        type: aws_sigv4\n        region: eu-west-1\n        service: s3\n        payload: {payload}\n        web_identity:\n          role_arn: arn:aws:iam::123456789012:role/egress\n          token_file: /var/run/secrets/token\n          sts_url: http://sts.local:5000\n    crm:\n      url: http://crm.local\n      auth:\n        type: bearer\n        token: static\n  routes:\n    - path_prefix: /egress/s3\n      target: s3\n      strip_prefix: /egress/s3\n    - path_prefix: /egress/crm\n      target: crm\nendpoints:\n  ready: /ready\n"
    );
    FilterConfig::from_config(&load_str(&yaml, &|_| None).unwrap())
}

struct Proxy {
    host: Host,
    egress: Worker,
    push: Worker,
    signer: PushSigner,
}

fn proxy(cfg: FilterConfig) -> Proxy {
    let host = Host::from_file(proxy_wasm_harness::egress_filter_wasm().unwrap()).unwrap();
    host.set_time(UNIX_EPOCH + Duration::from_secs(NOW_S));
    let signer = PushSigner::generate();
    let mut push_cfg = cfg.clone();
    push_cfg.role = Role::Push;
    push_cfg.push_public_key = Some(signer.public_pem());
    let egress = host.worker().unwrap();
    assert!(egress
        .start(b"", &serde_json::to_vec(&cfg).unwrap())
        .unwrap());
    let push = host.worker().unwrap();
    assert!(push
        .start(b"", &serde_json::to_vec(&push_cfg).unwrap())
        .unwrap());
    Proxy {
        host,
        egress,
        push,
        signer,
    }
}

fn body(target: &str, key_id: &str, expires_in_s: u64) -> Vec<u8> {
    serde_json::to_vec(&AwsPushBody {
        kind: AWS_PUSH_KIND.into(),
        target: target.into(),
        access_key_id: key_id.into(),
        secret_access_key: Secret::new(SECRET),
        session_token: Secret::new(SESSION),
        expires_at_ms: (NOW_S + expires_in_s) * 1000,
    })
    .unwrap()
}

fn send(worker: &Worker, method: &str, path: &str, auth: Option<&str>, body: &[u8]) -> Stream {
    let mut headers = vec![
        (":method", method.to_string()),
        (":path", path.to_string()),
        (":authority", "127.0.0.1:9902".to_string()),
    ];
    if let Some(a) = auth {
        headers.push(("authorization", a.to_string()));
    }
    let s = worker.http_request(headers, body.is_empty()).unwrap();
    if !body.is_empty() {
        s.request_body(body, true).unwrap();
    }
    s
}

fn reply(s: &Stream) -> (u32, serde_json::Value) {
    let r = s.local_response().expect("answered by the push listener");
    (r.status, serde_json::from_str(&r.body_str()).unwrap())
}

fn push(p: &Proxy, b: &[u8], jti: &str) -> (u32, serde_json::Value) {
    let now_s = p.host.now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let jwt = p.signer.sign(b, now_s, 60, jti).unwrap();
    reply(&send(
        &p.push,
        "POST",
        "/v1/tokens",
        Some(&format!("Bearer {jwt}")),
        b,
    ))
}

fn get_s3(w: &Worker) -> Stream {
    w.http_request(
        [
            (":method", "GET"),
            (":path", "/egress/s3/bucket/key"),
            (":authority", "egress:8080"),
        ],
        true,
    )
    .unwrap()
}

fn ready(w: &Worker) -> (u32, String) {
    let s = w
        .http_request(
            [
                (":method", "GET"),
                (":path", "/ready"),
                (":authority", "egress:8080"),
            ],
            true,
        )
        .unwrap();
    let r = s.local_response().expect("the filter answers /ready");
    (r.status, r.body_str())
}

fn no_secret_in_logs(p: &Proxy) {
    for w in [&p.egress, &p.push] {
        for l in w.logs() {
            assert!(
                !l.message.contains(SECRET) && !l.message.contains(SESSION),
                "{l:?}"
            );
        }
    }
}

#[test]
fn pushed_temporary_credentials_sign_requests_with_their_session_token() {
    let p = proxy(config("unsigned"));
    // Nothing pushed yet: 503 at once, never forwarded unsigned.
    let s = get_s3(&p.egress);
    let r = s.local_response().expect("503 without credentials");
    assert_eq!(r.status, 503);
    assert!(r.body_str().contains("credentials_unavailable"));
    assert_eq!(s.request_header("authorization"), None);

    let (status, text) = ready(&p.egress);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("\"s3\""), "{text}");

    let (status, rep) = push(&p, &body("s3", "ASIAHARNESS", 3600), "a1");
    assert_eq!(status, 200, "{rep}");
    assert_eq!(rep["kind"], AWS_PUSH_KIND);
    assert_eq!(rep["version"], 1);
    assert_eq!(
        ready(&p.egress).0,
        200,
        "ready once the credentials are there"
    );

    let s = get_s3(&p.egress);
    assert_eq!(
        s.last_action(),
        Some(Action::Continue),
        "{:?}",
        p.egress.logs()
    );
    let keys = AwsKeys {
        access_key_id: "ASIAHARNESS".into(),
        secret_access_key: Secret::new(SECRET),
        session_token: Some(Secret::new(SESSION)),
    };
    let want = sigv4::sign(
        &keys,
        "eu-west-1",
        "s3",
        &sigv4::Request {
            method: "GET",
            host: "s3.local:9000",
            path: "/base/bucket/key",
            headers: Vec::new(),
        },
        Payload::Unsigned,
        NOW_S * 1000,
    );
    for (name, value) in &want.headers {
        assert_eq!(
            s.request_header(name).as_deref(),
            Some(value.as_str()),
            "{name}"
        );
    }
    assert!(s
        .request_header("authorization")
        .unwrap()
        .contains("x-amz-security-token"));

    // The status lists the target, never the secret.
    let now_s = NOW_S;
    let jwt = p.signer.sign(b"", now_s, 60, "st1").unwrap();
    let (status, st) = reply(&send(
        &p.push,
        "GET",
        "/v1/status",
        Some(&format!("Bearer {jwt}")),
        b"",
    ));
    assert_eq!(status, 200);
    let text = st.to_string();
    assert!(!text.contains(SECRET) && !text.contains(SESSION), "{text}");
    let s3 = st["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "s3")
        .expect("s3 in the status");
    assert_eq!(
        (s3["valid"].as_bool(), s3["version"].as_u64()),
        (Some(true), Some(1))
    );
    no_secret_in_logs(&p);
}

#[test]
fn expired_credentials_give_503_until_a_new_push() {
    let p = proxy(config("unsigned"));
    assert_eq!(push(&p, &body("s3", "ASIAFIRST", 60), "e1").0, 200);
    assert_eq!(get_s3(&p.egress).last_action(), Some(Action::Continue));
    p.host.advance_and_tick(Duration::from_secs(61)).unwrap();
    let s = get_s3(&p.egress);
    let r = s.local_response().expect("expired: 503");
    assert_eq!(r.status, 503);
    assert!(r.body_str().contains("credentials_unavailable"));
    assert_eq!(s.request_header("authorization"), None);
    assert_eq!(
        ready(&p.egress).0,
        503,
        "not ready with expired credentials"
    );
    // A fresh set is used at once.
    assert_eq!(push(&p, &body("s3", "ASIASECOND", 3600), "e2").0, 200);
    let s = get_s3(&p.egress);
    assert_eq!(s.last_action(), Some(Action::Continue));
    assert!(s
        .request_header("authorization")
        .unwrap()
        .contains("Credential=ASIASECOND/"));
    no_secret_in_logs(&p);
}

#[test]
fn signed_payload_targets_are_signed_by_the_sign_role_with_pushed_credentials() {
    let cfg = config("signed");
    let p = proxy(cfg.clone());
    let mut sign_cfg = cfg;
    sign_cfg.role = Role::Sign;
    let signer = p.host.worker().unwrap();
    assert!(signer
        .start(b"", &serde_json::to_vec(&sign_cfg).unwrap())
        .unwrap());
    // Without credentials the sign role never forwards unsigned either.
    let headers = [
        (":method", "PUT"),
        (":path", "/base/bucket/key"),
        (":authority", "s3.local:9000"),
        (egress_core::plan::wire::TARGET_HEADER, "s3"),
    ];
    let s = signer.http_request(headers, true).unwrap();
    assert_eq!(s.local_response().map(|r| r.status), Some(503));
    assert_eq!(push(&p, &body("s3", "ASIASIGNED", 3600), "s1").0, 200);
    let s = signer.http_request(headers, true).unwrap();
    assert_eq!(s.last_action(), Some(Action::Continue));
    assert!(s
        .request_header("authorization")
        .unwrap()
        .contains("Credential=ASIASIGNED/"));
    assert_eq!(
        s.request_header("x-amz-security-token").as_deref(),
        Some(SESSION)
    );
}

#[test]
fn aws_pushes_for_other_targets_forged_or_replayed_are_refused() {
    let p = proxy(config("unsigned"));
    // A target that is not web_identity.
    let (status, rep) = push(&p, &body("crm", "ASIAX", 3600), "r1");
    assert_eq!(status, 400, "{rep}");
    assert!(rep["message"].as_str().unwrap().contains("web_identity"));
    // Unsigned.
    let b = body("s3", "ASIAX", 3600);
    assert_eq!(reply(&send(&p.push, "POST", "/v1/tokens", None, &b)).0, 401);
    // Replayed.
    assert_eq!(push(&p, &b, "r2").0, 200);
    assert_eq!(push(&p, &b, "r2").0, 401);
    // Expired or malformed credentials.
    let expired = serde_json::to_vec(&AwsPushBody {
        expires_at_ms: NOW_S * 1000 - 1,
        ..serde_json::from_slice::<AwsPushBody>(&b).unwrap()
    })
    .unwrap();
    assert_eq!(push(&p, &expired, "r3").0, 400);
    let bad = String::from_utf8(b.clone())
        .unwrap()
        .replace("ASIAX", "AS IA");
    assert_eq!(push(&p, bad.as_bytes(), "r4").0, 400);
    no_secret_in_logs(&p);
}
