use super::*;

fn keys(token: Option<&str>) -> AwsKeys {
    AwsKeys {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        session_token: token.map(Secret::new),
    }
}

fn req<'a>(path: &'a str) -> Request<'a> {
    Request {
        method: "get",
        host: "bucket.s3.amazonaws.com",
        path,
        headers: Vec::new(),
    }
}

#[test]
fn a_callers_own_signature_headers_are_never_signed() {
    let mut r = req("/k");
    r.headers = caller_headers_to_sign([
        ("Authorization", b"AWS4-HMAC-SHA256 forged".as_slice()),
        ("X-Amz-Date", b"19990101T000000Z".as_slice()),
        ("x-amz-security-token", b"callers".as_slice()),
        ("x-amz-meta-a", b"1".as_slice()),
        ("x-egress-target", b"other".as_slice()),
        ("content-type", b"text/plain".as_slice()),
        ("user-agent", b"curl".as_slice()),
    ]);
    let signed = sign(&keys(None), "us-east-1", "s3", &r, Payload::Unsigned, 0);
    assert!(signed
        .canonical_request
        .contains("\ncontent-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-a\n"));
    assert!(!signed.canonical_request.contains("forged"));
    assert!(!signed.canonical_request.contains("callers"));
    assert!(signed
        .headers
        .iter()
        .all(|(k, _)| k != "x-amz-security-token"));
}

#[test]
fn the_session_token_is_signed_and_sent_but_never_formatted() {
    let signed = sign(
        &keys(Some("tok-secret")),
        "eu-west-1",
        "s3",
        &req("/k"),
        Payload::Unsigned,
        0,
    );
    assert!(signed
        .headers
        .contains(&("x-amz-security-token".into(), "tok-secret".into())));
    assert!(signed
        .canonical_request
        .contains("x-amz-security-token:tok-secret\n"));
    assert!(!format!("{signed:?}").contains("wJalr"));
    assert!(!format!("{:?}", keys(Some("tok-secret"))).contains("tok-secret"));
}

#[test]
fn signed_payload_hashes_the_body_and_an_empty_body_hashes_to_the_empty_digest() {
    let signed = sign(
        &keys(None),
        "us-east-1",
        "s3",
        &req("/k"),
        Payload::Body(b""),
        0,
    );
    assert!(signed.headers.contains(&(
        "x-amz-content-sha256".into(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into()
    )));
}

#[test]
fn the_method_is_upper_cased_and_the_query_split_from_the_path() {
    let signed = sign(
        &keys(None),
        "us-east-1",
        "sts",
        &req("/?b=2&a=1"),
        Payload::Unsigned,
        0,
    );
    assert!(signed.canonical_request.starts_with("GET\n/\na=1&b=2\n"));
}

#[test]
fn signing_with_kept_keys_matches_signing_afresh_across_a_day_change() {
    let mut kept = SigningKeys::new();
    let r = req("/bucket/key?list-type=2");
    // 2026-11-30 23:59:59 UTC, then one second later (the next day's scope and key).
    for unix_ms in [1_764_547_199_000, 1_764_547_199_500, 1_764_547_200_000] {
        let fresh = sign(
            &keys(None),
            "us-east-1",
            "s3",
            &r,
            Payload::Unsigned,
            unix_ms,
        );
        let cached = sign_with(
            &keys(None),
            "us-east-1",
            "s3",
            &r,
            Payload::Unsigned,
            unix_ms,
            &mut kept,
        );
        assert_eq!(fresh, cached);
    }
    assert_eq!(kept.len(), 1);
}
