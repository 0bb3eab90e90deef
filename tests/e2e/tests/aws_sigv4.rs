//! `auth.type: aws_sigv4` end to end: real Envoy 1.40 running the built filter signs each
//! request after the rewrite, and `moto_server` with IAM authentication enforced verifies the
//! signatures with botocore. S3-style (path-style buckets, GET and PUT with a body, a query
//! string) and query-style APIs (IAM, STS), with `payload: unsigned` and `payload: signed`.
//! A target with a wrong secret is refused by moto, which proves the check is on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "cloud/moto.rs"]
mod moto;

use anyhow::{Context, Result};
use egress_e2e::*;
use moto::{xml_text, AccessKey, Moto};

struct Proxy {
    moto: Moto,
    envoy: Envoy,
    base: String,
    _state: tempfile::TempDir,
}

fn target(
    name: &str,
    moto: &Moto,
    service: &str,
    key: &AccessKey,
    secret: &str,
    payload: &str,
) -> String {
    format!(
        "    {name}:\n      url: {url}\n      auth:\n        type: aws_sigv4\n        region: us-east-1\n        service: {service}\n        access_key_id: {id}\n        secret_access_key: \"{secret}\"\n        payload: {payload}\n",
        url = moto.url(),
        id = key.id,
    )
}

/// `egressctl compile` of `config` and Envoy started on it, ready.
fn start_envoy(
    state: &tempfile::TempDir,
    config: &str,
    admin: u16,
    engine: Engine,
) -> Result<Envoy> {
    let config_path = state.path().join("config.yaml");
    std::fs::write(&config_path, config)?;
    let out = state.path().join("out");
    let compiled = compile_command(&config_path, &out, admin, engine)?
        .output()
        .context("running egressctl compile")?;
    let envoy = envoy_from_compile(&compiled, &out, admin, &[]).context(engine)?;
    Ok(envoy)
}

impl Proxy {
    fn start(engine: Engine) -> Result<Proxy> {
        // Enforcement starts after the three setup calls (user, access key, policy).
        let moto = Moto::start(Some(3))?;
        let key = moto.create_user_with_key("egress")?;
        let state = scratch_dir()?;
        let (listen, admin) = (free_port()?, free_port()?);
        let mut targets = String::new();
        let mut routes = String::new();
        for (name, service, payload, secret) in [
            ("s3u", "s3", "unsigned", key.secret.as_str()),
            ("s3s", "s3", "signed", key.secret.as_str()),
            ("iamu", "iam", "unsigned", key.secret.as_str()),
            ("stss", "sts", "signed", key.secret.as_str()),
            ("stsu", "sts", "unsigned", key.secret.as_str()),
            ("s3bad", "s3", "unsigned", "not-the-secret"),
        ] {
            targets.push_str(&target(name, &moto, service, &key, secret, payload));
            routes.push_str(&format!(
                "    - path_prefix: /egress/{name}\n      target: {name}\n      strip_prefix: /egress/{name}\n"
            ));
        }
        let config = format!(
            "http:\n  addr: \"127.0.0.1:{listen}\"\negress:\n  targets:\n{targets}  routes:\n{routes}"
        );
        let envoy = start_envoy(&state, &config, admin, engine)?;
        Ok(Proxy {
            moto,
            envoy,
            base: format!("http://127.0.0.1:{listen}"),
            _state: state,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn send(&self, method: &str, path: &str, body: Option<&[u8]>) -> Response {
        request(method, &self.url(path), &[], body).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: {e:#}\nenvoy:\n{}\nmoto:\n{}",
                self.envoy.log_tail(),
                self.moto.log()
            )
        })
    }

    fn expect(&self, status: u16, method: &str, path: &str, body: Option<&[u8]>) -> Response {
        let r = self.send(method, path, body);
        assert_eq!(
            r.status,
            status,
            "{method} {path}: {} {}\nenvoy:\n{}",
            r.status,
            r.body,
            self.envoy.log_tail()
        );
        r
    }
}

fn s3_get_and_put_with_a_body_are_accepted_by_moto_in_both_payload_modes(engine: Engine) {
    let p = Proxy::start(engine).unwrap();
    for (route, bucket) in [("s3u", "bucket-unsigned"), ("s3s", "bucket-signed")] {
        p.expect(200, "PUT", &format!("/egress/{route}/{bucket}"), None);
        let body = format!("object body via {route}, with spaces & symbols\n");
        p.expect(
            200,
            "PUT",
            &format!("/egress/{route}/{bucket}/dir/my%20key.txt"),
            Some(body.as_bytes()),
        );
        let got = p.expect(
            200,
            "GET",
            &format!("/egress/{route}/{bucket}/dir/my%20key.txt"),
            None,
        );
        assert_eq!(got.body, body, "{route}: the object as stored");
        // A query string, unsorted, with an empty value: ListObjectsV2 with a prefix.
        let list = p.expect(
            200,
            "GET",
            &format!("/egress/{route}/{bucket}?prefix=dir%2F&list-type=2&delimiter="),
            None,
        );
        assert!(
            list.body.contains("<Key>dir/my key.txt</Key>"),
            "{route}: {}",
            list.body
        );
    }
}

// Wasm engine only from here: how the filter signs (payload buffering, query-style APIs, the
// body hash) is the same module in both engines; `auto` reaches it through a filter leaf.

#[test]
fn signed_payload_of_a_larger_body_arriving_in_chunks_is_hashed_whole() {
    let p = Proxy::start(Engine::Wasm).unwrap();
    p.expect(200, "PUT", "/egress/s3s/big", None);
    let body: Vec<u8> = (0..300_000u32)
        .map(|i| b"abcdefghij"[(i % 10) as usize])
        .collect();
    p.expect(200, "PUT", "/egress/s3s/big/blob", Some(&body));
    let got = p.expect(200, "GET", "/egress/s3s/big/blob", None);
    assert_eq!(got.body.len(), body.len());
}

#[test]
fn query_style_apis_accept_the_signature_in_both_payload_modes() {
    let p = Proxy::start(Engine::Wasm).unwrap();
    // IAM over GET with the action in the query.
    let users = p.expect(
        200,
        "GET",
        "/egress/iamu/?Version=2010-05-08&Action=ListUsers",
        None,
    );
    assert!(
        users.body.contains("<UserName>egress</UserName>"),
        "{}",
        users.body
    );
    // STS over POST with a form body, signed and unsigned payload.
    for route in ["stss", "stsu"] {
        let r = request(
            "POST",
            &p.url(&format!("/egress/{route}/")),
            &[(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            Some(b"Action=GetCallerIdentity&Version=2011-06-15"),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{route}: {}", r.body);
        let arn = xml_text(&r.body, "Arn").unwrap_or_default();
        assert!(arn.ends_with(":user/egress"), "{route}: {}", r.body);
    }
}

#[test]
fn a_wrong_secret_is_refused_by_moto_so_the_check_is_real() {
    let p = Proxy::start(Engine::Wasm).unwrap();
    p.expect(200, "PUT", "/egress/s3u/checked", None);
    let r = p.send("GET", "/egress/s3bad/checked?list-type=2", None);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("SignatureDoesNotMatch"), "{}", r.body);
    // A caller's forged signature headers are replaced, never passed along.
    let r = request(
        "GET",
        &p.url("/egress/s3u/checked?list-type=2"),
        &[
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=FORGED/x, SignedHeaders=host, Signature=0",
            ),
            ("x-amz-date", "19990101T000000Z"),
            ("x-amz-security-token", "forged"),
        ],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn signed_payload_sends_the_sha256_of_the_body_the_target_receives() {
    // moto takes x-amz-content-sha256 as sent, so check the digest on an echoing stand-in.
    let echo = Standin::start(StandinOpts::new("echo")).unwrap();
    let state = scratch_dir().unwrap();
    let (listen, admin) = (free_port().unwrap(), free_port().unwrap());
    let config = format!(
        "http:\n  addr: \"127.0.0.1:{listen}\"\negress:\n  targets:\n    echo:\n      url: {url}\n      auth:\n        type: aws_sigv4\n        region: us-east-1\n        service: s3\n        access_key_id: AKIAECHO\n        secret_access_key: SECRETECHOKEY\n        payload: signed\n  routes:\n    - path_prefix: /egress/echo\n      target: echo\n",
        url = echo.url("")
    );
    let envoy = start_envoy(&state, &config, admin, Engine::Wasm).unwrap();
    let url = format!("http://127.0.0.1:{listen}/egress/echo/b/k");
    for body in [&b"a small body"[..], &vec![b'x'; 200_000][..], &b""[..]] {
        let r = request(
            "PUT",
            &url,
            &[("x-amz-content-sha256", "UNSIGNED-PAYLOAD")],
            Some(body),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}\n{}", r.body, envoy.log_tail());
        let echoed = r.json().unwrap();
        let h = |n: &str| echoed["headers"][n].as_str().unwrap_or("").to_string();
        assert_eq!(
            h("x-amz-content-sha256"),
            egress_core::sigv4::sha256_hex(body),
            "{echoed}"
        );
        assert!(
            h("authorization").contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date,"),
            "{echoed}"
        );
        assert_eq!(echoed["body"].as_str().unwrap_or("").len(), body.len());
        assert!(!echoed.to_string().contains("SECRETECHOKEY"));
    }
}

engine_tests!(s3_get_and_put_with_a_body_are_accepted_by_moto_in_both_payload_modes,);
