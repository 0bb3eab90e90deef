//! OAuth2 client authentication end to end (real Envoy, the built filter, the real OAuth2
//! server over TLS, a TLS echo stand-in as `crm`): `client_secret_post` and `private_key_jwt`
//! (RS256, ES256) get tokens through Envoy (the server accepts only the configured method), and
//! no log ever holds the client secret or a token, across refreshes and failed fetches.
//! (`client_secret_basic` is what `oauth2_envoy.rs` uses throughout.)
//!
//! Needs Envoy, `egress_filter.wasm` (`make wasm`), node + `npm ci` in
//! tests/support/oauth-server, python3, openssl; a missing one fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use egress_e2e::*;

const CLIENT_ID: &str = "crm-e2e-client";
/// Unique, so a leak is easy to find.
const CLIENT_SECRET: &str = "SECRET-crm-oauth-client-secret-5d1c";

fn tls_server(ttl: u64, client: OAuthClient) -> Result<OAuthServer> {
    OAuthServer::start(OAuthOpts::new(ttl, vec![client]).tls(Pki::generate()?.server()))
}

/// A private key and its public half (PEM), made by openssl in `dir`.
fn keypair(dir: &Path, name: &str, genpkey: &[&str]) -> Result<(PathBuf, PathBuf)> {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub.pem"));
    let run = |args: &[&str]| -> Result<Output> {
        let out = Command::new("openssl")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running openssl")?;
        ensure!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(out)
    };
    let mut args = vec!["genpkey"];
    args.extend_from_slice(genpkey);
    args.extend_from_slice(&["-out", private.to_str().unwrap()]);
    run(&args)?;
    run(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ])?;
    Ok((private, public))
}

/// The server accepts only `client`'s method; a token through Envoy proves the filter used it.
fn token_through_envoy(client: OAuthClient, auth: TargetAuth) -> Result<()> {
    let server = tls_server(600, client)?;
    let proxy = OAuth2Proxy::start(
        &OAuth2ProxyOpts::new(&server.token_url(), CLIENT_ID, CLIENT_SECRET).auth(auth),
    )?;
    proxy.wait_token()?;
    let token = bearer(&proxy.get(&format!("{CRM}/x"))?)?;
    server.check_issued(&token, CLIENT_ID)?;
    let stats = server.stats_json()?;
    assert_eq!(stats["token_requests"], 1, "{stats}");
    assert_eq!(stats["successes_by_client"][CLIENT_ID], 1, "{stats}");
    assert_eq!(proxy.stat("wasmcustom.egress.crm.tokens_fetched")?, 1);
    Ok(())
}

fn private_key_jwt(key: PathBuf, alg: &str, kid: &str) -> TargetAuth {
    TargetAuth::PrivateKeyJwt {
        key,
        alg: alg.to_owned(),
        kid: kid.to_owned(),
    }
}

#[test]
fn client_secret_post_gets_tokens_through_envoy() -> Result<()> {
    token_through_envoy(
        OAuthClient::post(CLIENT_ID, CLIENT_SECRET),
        TargetAuth::Post {
            secret: CLIENT_SECRET.to_owned(),
        },
    )
}

#[test]
fn private_key_jwt_rs256_gets_tokens_through_envoy() -> Result<()> {
    let dir = scratch_dir()?;
    let (key, public) = keypair(
        dir.path(),
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    )?;
    token_through_envoy(
        OAuthClient::private_key_jwt(CLIENT_ID, public, "rsa-1", "RS256"),
        private_key_jwt(key, "RS256", "rsa-1"),
    )
}

#[test]
fn private_key_jwt_es256_gets_tokens_through_envoy() -> Result<()> {
    let dir = scratch_dir()?;
    let (key, public) = keypair(
        dir.path(),
        "ec",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    )?;
    token_through_envoy(
        OAuthClient::private_key_jwt(CLIENT_ID, public, "ec-1", "ES256"),
        private_key_jwt(key, "ES256", "ec-1"),
    )
}

#[test]
fn logs_never_contain_the_client_secret_or_a_token() -> Result<()> {
    // Short tokens refreshed at half their lifetime, so refreshes and failures (garbage,
    // 500) get logged too, and the retries succeed before the token expires.
    const TTL: u64 = 6;
    let server = tls_server(TTL, OAuthClient::basic(CLIENT_ID, CLIENT_SECRET))?;
    let proxy = OAuth2Proxy::start(
        &OAuth2ProxyOpts::new(&server.token_url(), CLIENT_ID, CLIENT_SECRET)
            .refresh_before_expiry("3s"),
    )?;
    proxy.wait_token()?;
    let mut tokens = BTreeSet::new();
    let mut sent = 0usize;
    let mut get_some = |n: usize| -> Result<()> {
        for _ in 0..n {
            tokens.insert(bearer(&proxy.get(&format!("{CRM}/x?q=1"))?)?);
            sent += 1;
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    };
    get_some(5)?;
    for (mode, reason) in [
        (FailMode::Garbage, "bad_json"),
        (FailMode::Status500, "status_5xx"),
    ] {
        server.fail_next(mode, 1)?;
        let counter = format!("wasmcustom.egress.crm.token_fetch_failures.{reason}");
        wait_for(format!("a {reason} failure to be counted"), || {
            get_some(1)?;
            Ok(proxy.stat(&counter)? > 0)
        })?;
    }
    // Until a fresh token replaced the one held during the failures.
    let fetched = proxy.stat("wasmcustom.egress.crm.tokens_fetched")?;
    wait_for("a refresh after the failures", || {
        get_some(1)?;
        Ok(proxy.stat("wasmcustom.egress.crm.tokens_fetched")? > fetched)
    })?;
    get_some(3)?;
    assert!(tokens.len() >= 2, "{} tokens seen", tokens.len());
    // The request log is flushed every 100ms: wait until it holds every request we sent.
    wait_for(format!("{sent} request lines in the request log"), || {
        Ok(proxy
            .requests_log()
            .lines()
            .filter(|l| l.contains(r#""target":"crm""#))
            .count()
            >= sent)
    })?;

    let envoy_log = proxy.envoy.log();
    let requests_log = proxy.requests_log();
    // The logs do hold what they should: debug lines, failures, request lines.
    assert!(envoy_log.contains(r#""msg":"Credentials refreshed""#));
    assert!(envoy_log.contains(r#""msg":"Token fetch failed""#));
    let basic = STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let mut secrets = vec![CLIENT_SECRET.to_owned(), basic];
    secrets.extend(tokens.iter().cloned());
    for (what, text) in [
        ("Envoy's log", &envoy_log),
        ("the request log", &requests_log),
        ("egressctl compile's output", &proxy.compile_output),
    ] {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{what} contains a secret or token ({}…)",
                &secret[..6]
            );
        }
    }
    Ok(())
}
