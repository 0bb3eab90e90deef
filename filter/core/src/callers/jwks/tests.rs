//! The `jwks_url` rules on the in-memory host: one fetch per proxy, waiting requests, the
//! periodic and the unknown-`kid` refresh (at most one per 30 s), keys kept while the
//! endpoint is down or answers garbage, rotated keys picked up.

use super::*;
use crate::callers::auth::CallerInput;
use crate::callers::tests::{claims, plan, NOW};
use crate::callers::{Authenticator, CallersPlan, JwtAlg, KeySource, TokenCache};
use crate::tokens::coord::mock::{MockHost, World};
use jwt_simple::prelude::*;
use std::rc::Rc;

const URL: &str = "https://idp.example/jwks";

fn authenticator() -> Authenticator {
    Authenticator::new(&CallersPlan {
        mtls: false,
        jwt: vec![plan(
            "idp",
            &[JwtAlg::ES256],
            KeySource::JwksUrl {
                url: URL.into(),
                ca_cert: None,
            },
        )],
    })
    .unwrap()
}

fn key(kid: &str) -> ES256KeyPair {
    ES256KeyPair::generate().with_key_id(kid)
}

fn jwks(keys: &[&ES256KeyPair]) -> String {
    let list: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| {
            let mut j: serde_json::Value = serde_json::from_str(&k.public_key().to_jwk()).unwrap();
            j["kid"] = k.key_id().clone().unwrap().into();
            j
        })
        .collect();
    serde_json::json!({ "keys": list }).to_string()
}

fn token(k: &ES256KeyPair, sub: &str) -> String {
    k.sign(claims("idp", sub, 600)).unwrap()
}

struct Worker {
    host: MockHost,
    jwks: JwksManager,
    cache: TokenCache,
}

impl Worker {
    fn new(world: &Rc<World>, seed: u64) -> Self {
        let host = MockHost::new(world);
        let mut jwks = JwksManager::new(authenticator().jwks_sources(), seed);
        jwks.start(&host);
        Self {
            host,
            jwks,
            cache: TokenCache::new(16),
        }
    }

    /// The request's verdict: Ok(subject) or the refusal's (status, need).
    fn check(&mut self, a: &Authenticator, tok: &str) -> Result<String, (u16, Option<JwksNeed>)> {
        let value = format!("Bearer {tok}");
        let header = move |n: &str| (n == "authorization").then(|| value.clone());
        let input = CallerInput {
            peer_spiffe_id: None,
            header: &header,
        };
        let now = self.host.world.clock_ms.get() / 1000;
        a.authorize_with(None, None, &input, now, &mut self.cache, self.jwks.keys())
            .map(|ok| ok.caller.jwt.unwrap().subject)
            .map_err(|r| (r.reply.status, r.jwks))
    }

    fn reply(&mut self, status: Option<u16>, body: &str) -> Vec<Wake> {
        let id = self.host.last_callout().unwrap();
        self.jwks
            .on_callout(&self.host, id, status, body.len(), body.as_bytes())
    }

    fn dispatches(&self) -> usize {
        self.host.dispatched.borrow().len()
    }
}

fn need(kind: NeedKind) -> Option<JwksNeed> {
    Some(JwksNeed { issuer: 0, kind })
}

#[test]
fn a_request_before_the_first_fetch_waits_and_passes_once_the_keys_come() {
    let world = World::new(NOW * 1000);
    let a = authenticator();
    let mut w = Worker::new(&world, 7);
    let k1 = key("k1");
    let t = token(&k1, "svc");
    // Never fetched: 503 (not the caller's fault), with the need named; never fails open.
    assert_eq!(w.check(&a, &t), Err((503, need(NeedKind::NeverFetched))));
    assert_eq!(
        w.jwks.need(
            &w.host,
            JwksNeed {
                issuer: 0,
                kind: NeedKind::NeverFetched
            },
            42
        ),
        NeedOutcome::Wait
    );
    assert_eq!(
        w.dispatches(),
        0,
        "never dispatched from a request's context"
    );
    assert!(w.jwks.on_tick(&w.host).is_empty());
    assert_eq!(w.host.dispatched.borrow()[0].1, "egress_jwks_0");
    let wakes = w.reply(Some(200), &jwks(&[&k1]));
    assert_eq!(
        wakes,
        vec![Wake {
            context_id: 42,
            expired: false
        }]
    );
    assert_eq!(w.check(&a, &t), Ok("svc".into()));
    assert!(w.host.logged("JWKS fetched"));
}

#[test]
fn the_jwks_is_fetched_once_per_proxy_and_shared_by_every_worker() {
    let world = World::new(NOW * 1000);
    let a = authenticator();
    let mut w1 = Worker::new(&world, 11);
    let mut w2 = Worker::new(&world, 22);
    let k1 = key("k1");
    w1.jwks.on_tick(&w1.host);
    w2.jwks.on_tick(&w2.host);
    assert_eq!(w1.dispatches() + w2.dispatches(), 1);
    w1.reply(Some(200), &jwks(&[&k1]));
    world.advance(100);
    w2.jwks.on_tick(&w2.host);
    assert_eq!(w2.dispatches(), 0);
    assert_eq!(w2.check(&a, &token(&k1, "b")), Ok("b".into()));
    // Nothing more is fetched before the refresh period.
    world.advance(REFRESH_MS - 1000);
    w1.jwks.on_tick(&w1.host);
    w2.jwks.on_tick(&w2.host);
    assert_eq!(w1.dispatches() + w2.dispatches(), 1);
}

#[test]
fn the_jwks_is_refreshed_periodically_and_rotated_keys_are_taken_in() {
    let world = World::new(NOW * 1000);
    let a = authenticator();
    let mut w = Worker::new(&world, 3);
    let (k1, k2) = (key("k1"), key("k2"));
    w.jwks.on_tick(&w.host);
    w.reply(Some(200), &jwks(&[&k1]));
    world.advance(REFRESH_MS);
    w.jwks.on_tick(&w.host);
    assert_eq!(w.dispatches(), 2, "refreshed after {REFRESH_MS} ms");
    w.reply(Some(200), &jwks(&[&k2]));
    assert_eq!(w.check(&a, &token(&k2, "new")), Ok("new".into()));
    // k1 was rotated out: its tokens are no longer accepted (not cached before).
    assert_eq!(
        w.check(&a, &token(&k1, "old")),
        Err((401, need(NeedKind::UnknownKid)))
    );
}

#[test]
fn the_keys_in_use_are_kept_while_the_endpoint_is_down_or_answers_garbage() {
    let world = World::new(NOW * 1000);
    let a = authenticator();
    let mut w = Worker::new(&world, 5);
    let k1 = key("k1");
    w.jwks.on_tick(&w.host);
    w.reply(Some(200), &jwks(&[&k1]));
    let secret_n = serde_json::from_str::<serde_json::Value>(&jwks(&[&key("kx")])).unwrap()["keys"]
        [0]["x"]
        .as_str()
        .unwrap()
        .to_string();
    let rsa_only = r#"{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}"#.to_string();
    let dup = jwks(&[&key("d"), &key("d")]);
    let unknown_kty = r#"{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}"#.to_string();
    let huge = format!("{{\"keys\":[],\"pad\":\"{}\"}}", "x".repeat(MAX_JWKS_BYTES));
    let with_secret =
        format!(r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"z","x":"{secret_n}","y":"!!"}}]}}"#);
    let bad: Vec<(Option<u16>, String, &str)> = vec![
        (None, String::new(), "no reply"),
        (Some(503), "down".into(), "HTTP status 503"),
        (Some(200), "<html>not json</html>".into(), "not valid JSON"),
        (Some(200), "{\"keys\": 3}".into(), "not valid JSON"),
        (Some(200), rsa_only, "no key of the JWKS"),
        (Some(200), unknown_kty, "no key of the JWKS"),
        (Some(200), dup, "lists kid \\\"d\\\" twice"),
        (Some(200), huge, "larger than"),
        (Some(200), with_secret, "no key of the JWKS"),
    ];
    for (status, body, reason) in bad {
        world.advance(REFRESH_MS + 60_000);
        w.jwks.on_tick(&w.host);
        w.host.logs.borrow_mut().clear();
        w.reply(status, &body);
        assert!(w.host.logged("the keys in use are kept"), "{reason}");
        assert!(
            w.host.logged(reason),
            "{reason}: {:?}",
            w.host.logs.borrow()
        );
        assert!(!w.host.logged(&secret_n), "key material logged");
        // A new token (valid at the advanced clock) still verifies with the kept key.
        let later = (world.clock_ms.get() / 1000 - NOW) as i64;
        let fresh = k1.sign(claims("idp", "fresh", later + 600)).unwrap();
        assert_eq!(w.check(&a, &fresh).map(|_| ()), Ok(()), "{reason}");
    }
}

#[test]
fn an_unknown_kid_refreshes_at_most_once_per_30_seconds() {
    let world = World::new(NOW * 1000);
    let a = authenticator();
    let mut w = Worker::new(&world, 9);
    let (k1, k2, k3) = (key("k1"), key("k2"), key("k3"));
    w.jwks.on_tick(&w.host);
    w.reply(Some(200), &jwks(&[&k1]));
    let t2 = token(&k2, "rotated");
    assert_eq!(w.check(&a, &t2), Err((401, need(NeedKind::UnknownKid))));
    let unknown = JwksNeed {
        issuer: 0,
        kind: NeedKind::UnknownKid,
    };
    assert_eq!(w.jwks.need(&w.host, unknown, 1), NeedOutcome::Wait);
    // A second request with a new kid joins the refresh already asked for.
    assert_eq!(w.jwks.need(&w.host, unknown, 2), NeedOutcome::Wait);
    w.jwks.on_tick(&w.host);
    assert_eq!(w.dispatches(), 2, "the refresh is fetched at once");
    let wakes = w.reply(Some(200), &jwks(&[&k1, &k2]));
    assert_eq!(wakes.len(), 2);
    assert!(wakes.iter().all(|x| !x.expired));
    assert_eq!(w.check(&a, &t2), Ok("rotated".into()));
    // k3 within 30 s: refused at once, nothing fetched.
    world.advance(KID_REFRESH_MIN_INTERVAL_MS - 1000);
    assert_eq!(w.jwks.need(&w.host, unknown, 3), NeedOutcome::Refuse);
    w.jwks.on_tick(&w.host);
    assert_eq!(w.dispatches(), 2);
    // After 30 s it may ask again; the refresh without k3 ends the wait (then refused).
    world.advance(1000);
    assert_eq!(w.jwks.need(&w.host, unknown, 4), NeedOutcome::Wait);
    w.jwks.on_tick(&w.host);
    assert_eq!(w.dispatches(), 3);
    let wakes = w.reply(Some(200), &jwks(&[&k1, &k2]));
    assert_eq!(
        wakes,
        vec![Wake {
            context_id: 4,
            expired: false
        }]
    );
    assert_eq!(
        w.check(&a, &token(&k3, "x")),
        Err((401, need(NeedKind::UnknownKid)))
    );
    assert_eq!(w.jwks.need(&w.host, unknown, 4), NeedOutcome::Refuse);
}

#[test]
fn a_waiting_request_ends_when_the_endpoint_is_down_or_slow() {
    let world = World::new(NOW * 1000);
    let mut w = Worker::new(&world, 13);
    let first = JwksNeed {
        issuer: 0,
        kind: NeedKind::NeverFetched,
    };
    // Down: the failed fetch ends the wait (the request is then refused 503).
    assert_eq!(w.jwks.need(&w.host, first, 1), NeedOutcome::Wait);
    w.jwks.on_tick(&w.host);
    assert_eq!(
        w.reply(None, ""),
        vec![Wake {
            context_id: 1,
            expired: true
        }]
    );
    // While the retry backs off, nothing is coming: refused at once.
    assert_eq!(w.jwks.need(&w.host, first, 2), NeedOutcome::Refuse);
    // Slow: the retry is sent, the reply never comes; the wait ends at its deadline.
    world.advance(backoff_ms(1));
    w.jwks.on_tick(&w.host);
    assert_eq!(w.dispatches(), 2);
    assert_eq!(w.jwks.need(&w.host, first, 3), NeedOutcome::Wait);
    world.advance(WAIT_MS - 1);
    assert!(w.jwks.on_tick(&w.host).is_empty());
    world.advance(1);
    assert_eq!(
        w.jwks.on_tick(&w.host),
        vec![Wake {
            context_id: 3,
            expired: true
        }]
    );
    // The lease of the lost callout ran out with the wait: the fetch was tried again.
    assert_eq!(w.dispatches(), 3);
    // A request gone while waiting is forgotten.
    assert_eq!(w.jwks.need(&w.host, first, 4), NeedOutcome::Wait);
    w.jwks.forget(4);
    assert_eq!(w.jwks.waiting(), 0);
}

#[test]
fn validation_of_jwks_url_issuers() {
    let http = Authenticator::new(&CallersPlan {
        mtls: false,
        jwt: vec![plan(
            "idp",
            &[JwtAlg::RS256],
            KeySource::JwksUrl {
                url: "http://idp/jwks".into(),
                ca_cert: None,
            },
        )],
    });
    assert!(http.unwrap_err().to_string().contains("clear text"));
    let hmac = Authenticator::new(&CallersPlan {
        mtls: false,
        jwt: vec![plan(
            "idp",
            &[JwtAlg::HS256],
            KeySource::JwksUrl {
                url: URL.into(),
                ca_cert: None,
            },
        )],
    });
    assert!(hmac.unwrap_err().to_string().contains("needs `secret`"));
}

#[test]
fn failed_jwks_fetches_are_retried_after_1s_doubling_to_60s() {
    let delays: Vec<u64> = (0..=9).map(backoff_ms).collect();
    assert_eq!(
        delays,
        [0, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]
    );
    assert_eq!(backoff_ms(u32::MAX), 60_000);
}

/// The `reason` of a refused reply is logged with these texts (operators grep for them).
#[test]
fn refused_reply_reasons_keep_their_texts() {
    use manager::ReplyError;
    let texts = [
        (
            ReplyError::NoReply,
            "no reply (timeout, connection or TLS failure)".to_string(),
        ),
        (ReplyError::Status(503), "HTTP status 503".into()),
        (
            ReplyError::TooLarge { size: 300_000 },
            format!("a body of 300000 bytes is larger than the {MAX_JWKS_BYTES} allowed"),
        ),
        (ReplyError::NotUtf8, "the body is not UTF-8".into()),
        (
            ReplyError::Keys(crate::callers::jwt::KeyError::BadJwks {
                issuer: "idp".into(),
            }),
            r#"issuer "idp": the JWKS is not valid JSON with a `keys` array"#.into(),
        ),
    ];
    for (e, text) in texts {
        assert_eq!(e.to_string(), text);
    }
}
