//! `egressctl token refresh` and `egressctl status` end to end: real Envoys (`--concurrency 2`)
//! running the built `egress_filter.wasm` with their token push listener, the real OAuth2
//! server (`oidc-provider`, [`OAuthServer`]) over TLS verified with the test CA as the token
//! endpoint, a TLS echo stand-in as the target `crm`, and a real `redis-server` (started on a
//! free port, no persistence) for `token_store: redis`.
//!
//! What is promised (README, "Tokens pushed by egressctl"): one fetch reaches every proxy and
//! requests through each carry that token; the push listener refuses every forged push (401,
//! nothing changes); in redis mode the compiled files hold no client secret and the proxy
//! serves 503 `credentials_unavailable` until a token is pushed; `egressctl status` reports the
//! pushed token (exit 0) and fails (exit 3) for an unreachable proxy or a target without a
//! token. `--watch` is in `token_push_watch.rs`.
//!
//! Needs Envoy, `egress_filter.wasm` (`make wasm`), node + `npm ci` in
//! tests/support/oauth-server, redis-server (tests/support/install-test-deps.sh), python3,
//! openssl; a missing one fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod push_common;

use std::collections::BTreeSet;
use std::process::Stdio;

use anyhow::Result;
use egress_core::push::{sha256_hex, PushBody, PushSigner, PUSH_PATH};
use egress_core::secret::Secret;
use egress_e2e::*;
use push_common::{Upstreams, CLIENT_SECRET};
use serde_json::Value;

fn one_fetch_reaches_two_proxies_and_both_inject_it(engine: Engine) -> Result<()> {
    let up = Upstreams::start_for(600, engine)?;
    let a = up.proxy(None, None)?;
    let b = up.proxy(None, Some(&a.key()))?;
    // Memory store: each proxy fetched a token of its own first.
    a.wait_token()?;
    b.wait_token()?;
    let (own_a, own_b) = (bearer(&a.get(CRM)?)?, bearer(&b.get(CRM)?)?);
    assert_ne!(own_a, own_b);
    up.server.reset()?;

    let out = token_refresh(&a.config, &a.out, &[&a.push_url, &b.push_url])?;
    let said = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("crm: token fetched (expires "), "{said}");
    for p in [&a, &b] {
        assert!(
            said.contains(&format!("pushed to {} (version ", p.push_url)),
            "{said}"
        );
    }
    assert!(!said.contains(CLIENT_SECRET), "{said}");
    // One fetch, and both proxies now inject that token (not their own).
    assert_eq!(up.server.stats()?, (1, 1));
    // Each worker picks the new record up on its next tick: wait until every request to
    // either proxy carries one token, neither proxy's own.
    let pushed = wait_until("both proxies to inject the pushed token", || {
        let mut seen = BTreeSet::new();
        for _ in 0..10 {
            seen.insert(bearer(&a.get(&format!("{CRM}/a"))?)?);
            seen.insert(bearer(&b.get(&format!("{CRM}/b"))?)?);
        }
        Ok(match seen.iter().next() {
            Some(t) if seen.len() == 1 && *t != own_a && *t != own_b => Probe::Ready(t.clone()),
            _ => Probe::Pending(format!("{} tokens in use", seen.len())),
        })
    })?;
    assert!(!said.contains(&pushed), "the token was printed: {said}");
    // Status (signed with the same key) says where it came from.
    for p in [&a, &b] {
        let (code, v) = status_json(&a.out, &[&p.push_url])?;
        assert_eq!(code, Some(0), "{v}");
        let crm = target_status(&v, "crm");
        assert_eq!(crm["source"], "pushed", "{v}");
        assert_eq!(crm["valid"], true, "{v}");
        assert!(crm["expires_in_ms"].as_u64().unwrap() > 500_000, "{v}");
    }
    Ok(())
}

/// Posts a push with the given Authorization (or none); status and body.
fn post_push(proxy: &OAuth2Proxy, auth: Option<&str>, body: &[u8]) -> Result<Response> {
    let mut r = Request::post(&format!("{}{PUSH_PATH}", proxy.push_url))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    r.send()
}

fn push_body(token: &str) -> Vec<u8> {
    serde_json::to_vec(&PushBody {
        target: "crm".into(),
        access_token: Secret::new(token),
        token_type: "Bearer".into(),
        expires_at_ms: now_unix_ms() + 600_000,
    })
    .unwrap()
}

/// Wasm engine only: the push listener is the same in both engines (its own listener).
#[test]
fn the_push_listener_refuses_every_forged_push() -> Result<()> {
    let up = Upstreams::start(600)?;
    // Push-only (redis store, no refresher): the proxy holds only what is pushed.
    let p = up.proxy_with_store(
        TokenStore::Redis(format!("127.0.0.1:{}", free_port()?)),
        None,
    )?;
    let key = std::fs::read_to_string(p.key())?;
    let signer = PushSigner::from_pem(&key).unwrap();
    let now = now_unix_ms() / 1000;
    let forged = push_body("FORGED-token-0001");
    let bearer_of = |jwt: &str| format!("Bearer {jwt}");

    let forgeries = |label: &str| -> Result<()> {
        let mut attempts: Vec<(&str, Option<String>, Vec<u8>)> = vec![
            ("unsigned", None, forged.clone()),
            ("garbage", Some("Bearer not.a.jwt".into()), forged.clone()),
            (
                "expired",
                Some(bearer_of(
                    &signer
                        .sign(&forged, now - 300, 60, &format!("{label}-exp"))
                        .unwrap(),
                )),
                forged.clone(),
            ),
            (
                "wrong key",
                Some(bearer_of(
                    &PushSigner::generate()
                        .sign(&forged, now, 60, &format!("{label}-wk"))
                        .unwrap(),
                )),
                forged.clone(),
            ),
            (
                "another body",
                Some(bearer_of(
                    &signer
                        .sign(b"{}", now, 60, &format!("{label}-body"))
                        .unwrap(),
                )),
                forged.clone(),
            ),
        ];
        // Wrong audience, with the right key (jwt-simple directly).
        {
            use jwt_simple::prelude::*;
            let kp = Ed25519KeyPair::from_pem(&key).unwrap();
            let claims = Claims::with_custom_claims(
                serde_json::json!({ "body_sha256": sha256_hex(&forged) }),
                Duration::from_secs(60),
            )
            .with_issuer("egressctl")
            .with_audience("someone-else")
            .with_jwt_id(format!("{label}-aud"));
            attempts.push((
                "wrong audience",
                Some(bearer_of(&kp.sign(claims).unwrap())),
                forged.clone(),
            ));
        }
        // alg: none with the right claims.
        {
            use base64::Engine as _;
            let enc = |x: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(x);
            let claims = format!(
                r#"{{"iss":"egressctl","aud":"egress-push","iat":{now},"nbf":{now},"exp":{},"jti":"{label}-none","body_sha256":"{}"}}"#,
                now + 60,
                sha256_hex(&forged)
            );
            attempts.push((
                "alg none",
                Some(bearer_of(&format!(
                    "{}.{}.",
                    enc(r#"{"alg":"none","typ":"JWT"}"#),
                    enc(&claims)
                ))),
                forged.clone(),
            ));
        }
        for (what, auth, body) in attempts {
            let r = post_push(&p, auth.as_deref(), &body)?;
            assert_eq!(r.status, 401, "{label}: {what}: {} {}", r.status, r.body);
            assert_eq!(r.json()?["error"], "push_rejected", "{what}");
        }
        Ok(())
    };

    // Before any token: every forgery refused, still no token, requests get 503.
    forgeries("before")?;
    let (code, v) = status_json(&p.out, &[])?;
    assert_eq!(code, Some(3), "no valid token: status must fail: {v}");
    assert_eq!(target_status(&v, "crm")["valid"], false, "{v}");
    let r = p.get(CRM)?;
    assert_eq!(r.status, 503, "{}", r.body);

    // A real push, then its replay.
    let good = push_body("pushed-token-0001");
    let jwt = bearer_of(&signer.sign(&good, now, 60, "real-1").unwrap());
    let r = post_push(&p, Some(&jwt), &good)?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()?["version"], 1);
    let replay = post_push(&p, Some(&jwt), &good)?;
    assert_eq!(replay.status, 401, "replayed: {}", replay.body);
    let replay_forged = post_push(&p, Some(&jwt), &forged)?;
    assert_eq!(replay_forged.status, 401, "{}", replay_forged.body);

    forgeries("after")?;
    let (code, v) = status_json(&p.out, &[])?;
    assert_eq!(code, Some(0), "{v}");
    let crm = target_status(&v, "crm");
    assert_eq!(
        (crm["valid"].clone(), crm["version"].clone()),
        (Value::Bool(true), Value::from(1)),
        "{v}"
    );
    assert_eq!(crm["source"], "pushed");
    for _ in 0..5 {
        assert_eq!(bearer(&p.get(&format!("{CRM}/x"))?)?, "pushed-token-0001");
    }
    Ok(())
}

fn redis_mode_compiles_no_secret_waits_for_a_push_and_status_reports_it(
    engine: Engine,
) -> Result<()> {
    let redis = Redis::start()?;
    let up = Upstreams::start_for(600, engine)?;
    let p = up.proxy(Some(&redis), None)?;
    for f in ["envoy.yaml", "lds.json", "cds.yaml", "filter.json"] {
        let body = std::fs::read_to_string(p.out.join(f))?;
        assert!(!body.contains(CLIENT_SECRET), "{f} holds the client secret");
    }
    // No push yet: the proxy does not fetch; 503 credentials_unavailable.
    let r = p.get(&format!("{CRM}/x"))?;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()?["error"], "credentials_unavailable", "{}", r.body);
    assert_eq!(up.server.stats()?, (0, 0), "the proxy must not fetch");

    // An unreachable extra proxy: the refresh says which and exits 3, the good one is served.
    let dead = format!("http://127.0.0.1:{}", free_port()?);
    let out = token_refresh(&p.config, &p.out, &[&p.push_url, &dead])?;
    let said = output_text(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains(&format!("push to {dead} failed")), "{said}");
    assert!(
        said.contains(&format!("pushed to {} (version 1)", p.push_url)),
        "{said}"
    );
    let token = bearer(&p.get(&format!("{CRM}/x"))?)?;
    assert_eq!(up.server.stats()?, (1, 1));
    assert!(
        !said.contains(&token) && !said.contains(CLIENT_SECRET),
        "{said}"
    );

    // The token lives in redis; a second refresh reuses it (no fetch) and pushes it.
    let out = token_refresh(&p.config, &p.out, &[])?;
    let said = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("crm: token read from redis"), "{said}");
    assert_eq!(up.server.stats()?, (1, 1));
    assert_eq!(bearer(&p.get(&format!("{CRM}/y"))?)?, token);

    // Status: pushed, valid, requests counted from the admin; exit 0.
    let (code, v) = status_json(&p.out, &[])?;
    assert_eq!(code, Some(0), "{v}");
    let crm = target_status(&v, "crm");
    assert_eq!(crm["source"], "pushed", "{v}");
    assert_eq!(crm["version"], 2, "{v}");
    assert!(crm["requests"].as_u64().unwrap_or(0) >= 2, "{v}");
    assert!(!v.to_string().contains(&token));
    // The table format too.
    let o = egressctl()?
        .args(["status", "--out"])
        .arg(&p.out)
        .stdin(Stdio::null())
        .output()?;
    let table = output_text(&o);
    assert_eq!(o.status.code(), Some(0), "{table}");
    assert!(table.contains("crm") && table.contains("pushed"), "{table}");
    // An unreachable proxy: exit 3, named.
    let (code, v) = status_json(&p.out, &[&p.push_url, &dead])?;
    assert_eq!(code, Some(3), "{v}");
    assert_eq!(v["proxies"][1]["reachable"], false, "{v}");
    assert_eq!(v["proxies"][0]["reachable"], true, "{v}");
    Ok(())
}

engine_tests!(
    one_fetch_reaches_two_proxies_and_both_inject_it,
    redis_mode_compiles_no_secret_waits_for_a_push_and_status_reports_it,
);
