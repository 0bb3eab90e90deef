#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;
use crate::push::{PushSigner, PushVerifier};
use crate::sigv4::{sign, Payload, Request};
use crate::tokens::coord::mock::{MockHost, World};

const NOW: u64 = 1_800_000_000_000;

fn body(secret: &str, expires_at_ms: u64) -> Vec<u8> {
    serde_json::to_vec(&AwsPushBody {
        kind: AWS_PUSH_KIND.into(),
        target: "s3".into(),
        access_key_id: "ASIAEXAMPLE".into(),
        secret_access_key: Secret::new(secret),
        session_token: Secret::new("FQoGZXIvYXdzE+tok/en="),
        expires_at_ms,
    })
    .unwrap()
}

#[test]
fn a_signed_aws_push_round_trips_into_shared_data_and_signs_with_its_session_token() {
    let signer = PushSigner::generate();
    let verifier = PushVerifier::from_pem(&signer.public_pem()).unwrap();
    let b = body("wJalrXUtnFEMI/K7MDENG", NOW + 3_600_000);
    let jwt = signer.sign(&b, NOW / 1000, 60, "j1").unwrap();
    verifier
        .verify(Some(&format!("Bearer {jwt}")), &b, NOW / 1000)
        .unwrap();
    assert!(is_aws_push(&b));
    let (target, rec) = record_from_body(&b, NOW).unwrap();
    assert_eq!(target, "s3");
    let dbg = format!(
        "{rec:?} {:?}",
        serde_json::from_slice::<AwsPushBody>(&b).unwrap()
    );
    assert!(!dbg.contains("wJalr") && !dbg.contains("FQoG"), "{dbg}");

    let world = World::new(NOW);
    let host = MockHost::new(&world);
    let stored = store(&host, "s3", &rec).unwrap().written.unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(
        store(&host, "s3", &rec).unwrap().written.unwrap().version,
        2
    );

    // Another worker reads them and signs with them.
    let other = MockHost::new(&world);
    let mut cache = AwsCredCache::default();
    let keys = cache.keys(&other, "s3", NOW).unwrap();
    assert_eq!(keys.access_key_id, "ASIAEXAMPLE");
    let req = Request {
        method: "GET",
        host: "127.0.0.1:5000",
        path: "/bucket/k",
        headers: Vec::new(),
    };
    let signed = sign(&keys, "us-east-1", "s3", &req, Payload::Unsigned, NOW);
    let token = signed
        .headers
        .iter()
        .find(|(k, _)| k == "x-amz-security-token")
        .map(|(_, v)| v.as_str());
    assert_eq!(token, Some("FQoGZXIvYXdzE+tok/en="));
    let auth = &signed.headers.first().unwrap().1;
    assert!(
        auth.contains("Credential=ASIAEXAMPLE/")
            && auth.contains(
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token"
            ),
        "{auth}"
    );
    assert!(cache.keys(&other, "nope", NOW).is_none());
}

#[test]
fn expired_credentials_are_not_used_and_a_new_push_is_picked_up() {
    let world = World::new(NOW);
    let host = MockHost::new(&world);
    let mut cache = AwsCredCache::default();
    assert!(cache.keys(&host, "s3", NOW).is_none(), "nothing pushed yet");
    let (_, rec) = record_from_body(&body("first", NOW + 1_000), NOW).unwrap();
    store(&host, "s3", &rec).unwrap();
    // Within the recheck interval a miss is re-read at once (the copy was not valid).
    assert!(cache.keys(&host, "s3", NOW + 1).is_some());
    assert!(cache.keys(&host, "s3", NOW + 1_000).is_none(), "expired");
    let (_, rec) = record_from_body(&body("second", NOW + 60_000), NOW + 1_000).unwrap();
    store(&host, "s3", &rec).unwrap();
    let k = cache.keys(&host, "s3", NOW + 1_001).unwrap();
    assert_eq!(k.secret_access_key.expose(), "second");
    // A rotation before expiry is seen after the recheck interval.
    let (_, rec) = record_from_body(&body("third", NOW + 90_000), NOW + 1_002).unwrap();
    store(&host, "s3", &rec).unwrap();
    let k = cache.keys(&host, "s3", NOW + 1_002 + RECHECK_MS).unwrap();
    assert_eq!(k.secret_access_key.expose(), "third");
    let st = status(&host, &["s3", "none"], NOW + 2_000);
    let text = serde_json::to_string(&st).unwrap();
    assert!(!text.contains("third") && !text.contains("FQoG"), "{text}");
    assert_eq!(st[0]["valid"], true);
    assert_eq!(st[1]["valid"], false);
}

#[test]
fn bad_aws_pushes_are_refused_with_400() {
    let good = String::from_utf8(body("s3cr/t", NOW + 1000)).unwrap();
    let cases = [
        good.replace("ASIAEXAMPLE", "ASIA EXAMPLE"),
        good.replace("s3cr/t", "s3cr\\r\\nt"),
        good.replace("s3cr/t", ""),
        good.replace("FQoGZXIvYXdzE+tok/en=", "a b"),
        good.replace(&format!("{}", NOW + 1000), "1"),
        good.replace(AWS_PUSH_KIND, "other"),
        good.replace("\"target\"", "\"extra\":1,\"target\""),
        "garbage".to_string(),
    ];
    for c in cases {
        let e = record_from_body(c.as_bytes(), NOW).unwrap_err();
        assert_eq!(e.status(), 400, "{c}");
        assert!(!e.to_string().contains("s3cr"), "{e}");
    }
    assert!(!is_aws_push(
        br#"{"target":"t","access_token":"a","token_type":"Bearer","expires_at_ms":1}"#
    ));
    assert!(!is_aws_push(b"[]"));
}
