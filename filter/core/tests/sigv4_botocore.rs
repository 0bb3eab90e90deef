//! Our SigV4 signer against botocore's (AWS's own), on vectors written by
//! `tests/support/sigv4_oracle.py`: the same canonical request, string to sign and
//! `Authorization` header for each case (encoded paths, repeated and unsorted query
//! parameters, empty values, folded header whitespace, session tokens, both payload modes).

use egress_core::secret::Secret;
use egress_core::sigv4::{caller_headers_to_sign, sign, AwsKeys, Payload, Request};
use serde_json::Value;

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

#[test]
fn signatures_match_botocore_for_every_vector() {
    let doc: Value =
        serde_json::from_str(include_str!("data/sigv4_botocore.json")).expect("vectors parse");
    let vectors = doc["vectors"].as_array().expect("vectors array");
    assert!(vectors.len() >= 10, "too few vectors: {}", vectors.len());
    for v in vectors {
        let name = s(v, "name");
        let keys = AwsKeys {
            access_key_id: s(v, "access_key_id").into(),
            secret_access_key: Secret::new(s(v, "secret_access_key")),
            session_token: v
                .get("session_token")
                .and_then(Value::as_str)
                .map(Secret::new),
        };
        let raw_headers: Vec<(String, Vec<u8>)> = v
            .get("headers")
            .and_then(Value::as_array)
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h[0].as_str().unwrap_or("").to_string(),
                            h[1].as_str().unwrap_or("").as_bytes().to_vec(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let headers =
            caller_headers_to_sign(raw_headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
        let body = s(v, "body").as_bytes();
        let payload = if s(v, "payload") == "signed" {
            Payload::Body(body)
        } else {
            Payload::Unsigned
        };
        let req = Request {
            method: s(v, "method"),
            host: s(v, "host"),
            path: s(v, "path"),
            headers,
        };
        let unix_ms = v["unix_ms"].as_u64().expect("unix_ms");
        let signed = sign(
            &keys,
            s(v, "region"),
            s(v, "service"),
            &req,
            payload,
            unix_ms,
        );
        assert_eq!(
            signed.canonical_request,
            s(v, "expect_canonical_request"),
            "{name}: canonical request"
        );
        assert_eq!(
            signed.string_to_sign,
            s(v, "expect_string_to_sign"),
            "{name}: string to sign"
        );
        let get = |h: &str| {
            signed
                .headers
                .iter()
                .find(|(k, _)| k == h)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("authorization"),
            Some(s(v, "expect_authorization")),
            "{name}: authorization"
        );
        assert_eq!(
            get("x-amz-content-sha256"),
            Some(s(v, "expect_content_sha256")),
            "{name}: content hash"
        );
        assert_eq!(get("x-amz-date"), Some("20150830T123600Z"), "{name}: date");
        assert_eq!(
            get("x-amz-security-token"),
            v.get("session_token").and_then(Value::as_str),
            "{name}: session token"
        );
    }
}
