//! `aws_sigv4` in the built filter, driven through the proxy-wasm ABI: what the glue hands the
//! signer (the final path and authority, the method, the caller's `x-amz-*` headers, the
//! host's clock), the body digest of `payload: signed`, and the sign role that uses it. The
//! signer itself is checked against botocore in egress-core; here the expected signature is
//! computed by egress-core from the inputs the request should have been signed with.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use egress_core::config::load::load_str;
use egress_core::plan::{wire, FilterConfig, Role};
use egress_core::secret::Secret;
use egress_core::sigv4::{self, AwsKeys, Payload};
use proxy_wasm_harness::{Action, Host, Stream, Worker};
use std::time::{Duration, UNIX_EPOCH};

const SECRET: &str = "wJalrXUtnFEMI-harness-SECRET";
/// 2015-08-30T12:36:00Z.
const NOW_MS: u64 = 1_440_938_160_000;

fn config(payload: &str) -> FilterConfig {
    let yaml = format!(
        "http:\n  addr: \":8080\"\negress:\n  targets:\n    s3:\n      url: http://s3.local:9000/base\n      auth:\n        type: aws_sigv4\n        region: eu-west-1\n        service: s3\n        access_key_id: AKIAHARNESS\n        secret_access_key: {SECRET}\n        session_token: SESSION-tok\n        payload: {payload}\n  routes:\n    - path_prefix: /egress/s3\n      target: s3\n      strip_prefix: /egress/s3\n"
    );
    FilterConfig::from_config(&load_str(&yaml, &|_| None).unwrap())
}

fn worker(config: &FilterConfig) -> (Host, Worker) {
    let wasm = proxy_wasm_harness::egress_filter_wasm().unwrap_or_else(|e| panic!("{e}"));
    let host = Host::from_file(wasm).unwrap();
    host.set_time(UNIX_EPOCH + Duration::from_millis(NOW_MS));
    let worker = host.worker().unwrap();
    let ok = worker
        .start(b"", &serde_json::to_vec(config).unwrap())
        .unwrap();
    assert!(ok, "config rejected: {:?}", worker.logs());
    (host, worker)
}

fn keys() -> AwsKeys {
    AwsKeys {
        access_key_id: "AKIAHARNESS".into(),
        secret_access_key: Secret::new(SECRET),
        session_token: Some(Secret::new("SESSION-tok")),
    }
}

fn expected(
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    payload: Payload<'_>,
) -> sigv4::Signed {
    let req = sigv4::Request {
        method,
        host: "s3.local:9000",
        path,
        headers: extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    sigv4::sign(&keys(), "eu-west-1", "s3", &req, payload, NOW_MS)
}

fn header(stream: &Stream, name: &str) -> Option<String> {
    stream.request_header(name)
}

fn assert_signed_like(stream: &Stream, want: &sigv4::Signed) {
    for (name, value) in &want.headers {
        assert_eq!(
            header(stream, name).as_deref(),
            Some(value.as_str()),
            "{name}"
        );
    }
}

#[test]
fn unsigned_payload_is_signed_in_the_headers_callback_over_the_rewritten_request() {
    let (_host, worker) = worker(&config("unsigned"));
    let stream = worker
        .http_request(
            [
                (":method", "GET"),
                (":path", "/egress/s3/bucket/a%20b?z=1&a="),
                (":authority", "egress.local"),
                ("x-amz-meta-owner", "  team   a "),
                ("x-amz-date", "19990101T000000Z"),
                ("authorization", "AWS4-HMAC-SHA256 forged"),
                ("user-agent", "t"),
            ],
            true,
        )
        .unwrap();
    assert_eq!(
        stream.last_action(),
        Some(Action::Continue),
        "{:?}",
        worker.logs()
    );
    assert_eq!(
        header(&stream, ":path").as_deref(),
        Some("/base/bucket/a%20b?z=1&a=")
    );
    let want = expected(
        "GET",
        "/base/bucket/a%20b?z=1&a=",
        &[("x-amz-meta-owner", "  team   a ")],
        Payload::Unsigned,
    );
    assert_signed_like(&stream, &want);
    // One value each: the caller's copies were replaced.
    let dates: Vec<_> = stream
        .request_header_map()
        .into_iter()
        .filter(|(k, _)| k == "x-amz-date" || k == "authorization")
        .collect();
    assert_eq!(dates.len(), 2, "{dates:?}");
    for l in worker.logs() {
        assert!(
            !l.message.contains(SECRET) && !l.message.contains("SESSION-tok"),
            "{l:?}"
        );
    }
}

#[test]
fn signed_payload_records_the_digest_of_the_whole_body_for_the_signer() {
    let (_host, worker) = worker(&config("signed"));
    let stream = worker
        .http_request(
            [
                (":method", "PUT"),
                (":path", "/egress/s3/b/k"),
                (":authority", "e"),
            ],
            false,
        )
        .unwrap();
    // The headers go on (the buffer filter holds them); no signature yet.
    assert_eq!(stream.last_action(), Some(Action::Continue));
    assert_eq!(header(&stream, "authorization"), None);
    assert_eq!(
        stream.request_body(b"first chunk, ", false).unwrap(),
        Action::Continue
    );
    assert_eq!(
        stream.request_body(b"second chunk", true).unwrap(),
        Action::Continue
    );
    let digest = stream.filter_property(&[wire::PROP_BODY_SHA256]).unwrap();
    assert_eq!(
        String::from_utf8(digest).unwrap(),
        sigv4::sha256_hex(b"first chunk, second chunk")
    );
}

#[test]
fn the_sign_role_signs_with_the_recorded_digest_and_leaves_other_targets_alone() {
    let mut c = config("signed");
    c.role = Role::Sign;
    let (_host, worker) = worker(&c);
    let digest = sigv4::sha256_hex(b"body");
    let stream = worker.create_stream().unwrap();
    stream.set_property(&[wire::PROP_BODY_SHA256], digest.clone());
    stream
        .request_headers(
            [
                (":method", "PUT"),
                (":path", "/base/b/k"),
                (":authority", "s3.local:9000"),
                (wire::TARGET_HEADER, "s3"),
                ("content-type", "text/plain"),
            ],
            false,
        )
        .unwrap();
    assert_eq!(stream.last_action(), Some(Action::Continue));
    let want = expected(
        "PUT",
        "/base/b/k",
        &[("content-type", "text/plain")],
        Payload::Sha256Hex(&digest),
    );
    assert_signed_like(&stream, &want);

    // A request for no SigV4 target passes untouched.
    let other = worker
        .http_request(
            [
                (":method", "GET"),
                (":path", "/x"),
                (":authority", "a"),
                (wire::TARGET_HEADER, "other"),
            ],
            true,
        )
        .unwrap();
    assert_eq!(other.last_action(), Some(Action::Continue));
    assert_eq!(header(&other, "authorization"), None);
}
