//! The OAuth2 test server helper ([`OAuthServer`]: the real `oidc-provider` from npm) on its
//! own, without Envoy: every client authentication method gets a token whose `expires_in` is
//! the configured TTL, bad credentials get `401 invalid_client`, the counters and the failure
//! injection work, and a restart comes back on the same port.
//!
//! Needs node >= 20.18 and `npm ci` in tests/support/oauth-server
//! (`bash tests/support/install-test-deps.sh`); without them the tests fail, naming
//! that install step (nothing is skipped).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use egress_e2e::*;
use jwt_simple::prelude::{
    Claims, Duration as JwtDuration, ECDSAP256KeyPairLike, ES256KeyPair, RS256KeyPair,
    RSAKeyPairLike,
};
use serde_json::Value;

const TTL: u64 = 4;
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn token_request(server: &OAuthServer, headers: &[(&str, &str)], body: &str) -> Result<Response> {
    let mut req = Request::post(&server.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned());
    for (name, value) in headers {
        req = req.header(name, value);
    }
    req.send()
}

fn basic_token(server: &OAuthServer, id: &str, secret: &str, scope: &str) -> Result<Response> {
    let credentials = format!("{}:{}", form_encode(id), form_encode(secret));
    let auth = format!("Basic {}", STANDARD.encode(credentials));
    token_request(
        server,
        &[("authorization", &auth)],
        &form(&[("grant_type", "client_credentials"), ("scope", scope)]),
    )
}

fn post_token(server: &OAuthServer, id: &str, secret: &str) -> Result<Response> {
    token_request(
        server,
        &[],
        &form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ]),
    )
}

fn assertion_token(server: &OAuthServer, id: &str, assertion: &str) -> Result<Response> {
    token_request(
        server,
        &[],
        &form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ]),
    )
}

/// A unique `jti`.
fn jti() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A private key (PKCS#8 PEM) and its public half, made by openssl in `dir`.
struct KeyFiles {
    private: PathBuf,
    public: PathBuf,
}

fn openssl(args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running openssl")?;
    if !out.status.success() {
        bail!(
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn genkey(dir: &Path, name: &str, genpkey_args: &[&str]) -> Result<KeyFiles> {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub.pem"));
    let private_s = private.to_str().context("non-UTF-8 path")?;
    let public_s = public.to_str().context("non-UTF-8 path")?;
    let mut args = vec!["genpkey"];
    args.extend_from_slice(genpkey_args);
    args.extend_from_slice(&["-out", private_s]);
    openssl(&args)?;
    openssl(&["pkey", "-in", private_s, "-pubout", "-out", public_s])?;
    Ok(KeyFiles { private, public })
}

fn rsa_key(dir: &Path) -> Result<KeyFiles> {
    genkey(
        dir,
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    )
}

fn ec_key(dir: &Path) -> Result<KeyFiles> {
    genkey(
        dir,
        "ec",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    )
}

fn claims(
    client_id: &str,
    aud: &str,
) -> jwt_simple::prelude::JWTClaims<jwt_simple::prelude::NoCustomClaims> {
    Claims::create(JwtDuration::from_secs(60))
        .with_issuer(client_id)
        .with_subject(client_id)
        .with_audience(aud)
        .with_jwt_id(jti())
}

fn rs256_assertion(key: &KeyFiles, kid: &str, client_id: &str, aud: &str) -> Result<String> {
    let pem = std::fs::read_to_string(&key.private)?;
    let key = RS256KeyPair::from_pem(&pem)?.with_key_id(kid);
    key.sign(claims(client_id, aud))
}

fn es256_assertion(key: &KeyFiles, kid: &str, client_id: &str, aud: &str) -> Result<String> {
    let pem = std::fs::read_to_string(&key.private)?;
    let key = ES256KeyPair::from_pem(&pem)?.with_key_id(kid);
    key.sign(claims(client_id, aud))
}

/// Asserts a successful token response with `expires_in` == `TTL`; returns the JSON.
fn assert_token(resp: &Response, what: &str) -> Value {
    assert_eq!(resp.status, 200, "{what}: {}", resp.body);
    let json = resp.json().unwrap();
    assert_eq!(json["expires_in"], TTL, "{what}: {json}");
    assert_eq!(json["token_type"], "Bearer", "{what}: {json}");
    assert!(
        json["access_token"].as_str().is_some_and(|t| t.len() >= 20),
        "{what}: {json}"
    );
    json
}

fn assert_invalid_client(resp: &Response, what: &str) {
    assert_eq!(resp.status, 401, "{what}: {}", resp.body);
    assert_eq!(resp.json().unwrap()["error"], "invalid_client", "{what}");
}

#[test]
fn client_secret_basic_and_post() -> Result<()> {
    let server = OAuthServer::start(OAuthOpts::new(
        TTL,
        vec![
            OAuthClient::basic("basic-client", "s3cret:with/odd chars%"),
            OAuthClient::post("post-client", "p0st-secret"),
        ],
    ))?;
    assert_eq!(
        server.token_url(),
        format!("http://127.0.0.1:{}/token", server.port())
    );
    assert_eq!(server.stats()?, (0, 0));

    let basic = basic_token(&server, "basic-client", "s3cret:with/odd chars%", "api")?;
    let json = assert_token(&basic, "basic");
    assert_eq!(json["scope"], "api");
    assert_token(&post_token(&server, "post-client", "p0st-secret")?, "post");

    assert_invalid_client(
        &basic_token(&server, "basic-client", "wrong", "api")?,
        "basic, wrong secret",
    );
    assert_invalid_client(
        &post_token(&server, "post-client", "wrong")?,
        "post, wrong secret",
    );
    // The registered method is enforced (server.mjs adds this to oidc-provider, which would
    // take either): the basic client may not post its secret, nor the post client use Basic.
    assert_invalid_client(
        &post_token(&server, "basic-client", "s3cret:with/odd chars%")?,
        "basic client using client_secret_post",
    );
    assert_invalid_client(
        &basic_token(&server, "post-client", "p0st-secret", "api")?,
        "post client using client_secret_basic",
    );
    assert_invalid_client(&post_token(&server, "nobody", "x")?, "unknown client");

    assert_eq!(server.stats()?, (7, 2));
    let stats = server.stats_json()?;
    assert_eq!(stats["successes_by_client"]["basic-client"], 1);
    assert_eq!(stats["successes_by_client"]["post-client"], 1);
    server.reset()?;
    assert_eq!(server.stats()?, (0, 0));
    Ok(())
}

#[test]
fn private_key_jwt_rs256_and_es256() -> Result<()> {
    let keys = scratch_dir()?;
    let rsa = rsa_key(keys.path())?;
    let ec = ec_key(keys.path())?;
    let server = OAuthServer::start(OAuthOpts::new(
        TTL,
        vec![
            OAuthClient::private_key_jwt("rsa-client", &rsa.public, "rsa-1", "RS256"),
            OAuthClient::private_key_jwt("ec-client", &ec.public, "ec-1", "ES256"),
        ],
    ))?;
    let token_url = server.token_url();
    let issuer = server.issuer();
    assert_eq!(issuer, format!("http://127.0.0.1:{}", server.port()));

    // aud = the token endpoint URL, and aud = the issuer: both accepted.
    for aud in [&token_url, &issuer] {
        let a = rs256_assertion(&rsa, "rsa-1", "rsa-client", aud)?;
        assert_token(&assertion_token(&server, "rsa-client", &a)?, "RS256");
        let a = es256_assertion(&ec, "ec-1", "ec-client", aud)?;
        assert_token(&assertion_token(&server, "ec-client", &a)?, "ES256");
    }

    // A replayed assertion (same jti) is refused.
    let a = es256_assertion(&ec, "ec-1", "ec-client", &token_url)?;
    assert_token(&assertion_token(&server, "ec-client", &a)?, "first use");
    assert_invalid_client(&assertion_token(&server, "ec-client", &a)?, "replay");
    // Another audience is refused.
    let a = rs256_assertion(
        &rsa,
        "rsa-1",
        "rsa-client",
        "https://elsewhere.example/token",
    )?;
    assert_invalid_client(&assertion_token(&server, "rsa-client", &a)?, "wrong aud");
    // Signed by a key the client did not register.
    let a = es256_assertion(&ec, "ec-1", "rsa-client", &token_url)?;
    assert_invalid_client(&assertion_token(&server, "rsa-client", &a)?, "wrong key");

    assert_eq!(server.stats()?, (8, 5));
    Ok(())
}

#[test]
fn restart_on_the_same_port() -> Result<()> {
    let mut server = OAuthServer::start(OAuthOpts::new(TTL, vec![OAuthClient::post("c", "s")]))?;
    let port = server.port();
    assert_token(&post_token(&server, "c", "s")?, "before");
    assert_eq!(server.stats()?, (1, 1));

    server.stop()?;
    assert!(!server.is_running());
    assert!(
        post_token(&server, "c", "s").is_err(),
        "nothing should answer on {port} while stopped"
    );
    assert!(server.stats().is_err());

    server.restart()?;
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert_eq!(
        server.stats()?,
        (0, 0),
        "a restarted server starts counting afresh"
    );
    assert_token(&post_token(&server, "c", "s")?, "after");
    assert_eq!(server.stats()?, (1, 1));
    // restart() while running works too.
    server.restart()?;
    assert_token(&post_token(&server, "c", "s")?, "after second restart");
    // restart_failing: the failures are in force from the first request on.
    server.restart_failing(FailMode::Status500, 1)?;
    let resp = post_token(&server, "c", "s")?;
    assert_eq!(resp.status, 500, "{}", resp.body);
    assert_token(&post_token(&server, "c", "s")?, "after the injected 500");
    Ok(())
}

#[test]
fn injected_failures() -> Result<()> {
    let server = OAuthServer::start(OAuthOpts::new(TTL, vec![OAuthClient::post("c", "s")]))?;

    server.fail_next(FailMode::Status500, 2)?;
    for _ in 0..2 {
        let resp = post_token(&server, "c", "s")?;
        assert_eq!(resp.status, 500, "{}", resp.body);
        assert_eq!(resp.json()?["error"], "server_error");
    }
    assert_token(&post_token(&server, "c", "s")?, "after 500s");

    server.fail_next(FailMode::Garbage, 1)?;
    let resp = post_token(&server, "c", "s")?;
    assert_eq!(resp.status, 200);
    assert!(
        resp.json().is_err(),
        "garbage should not be JSON: {}",
        resp.body
    );

    server.fail_next(FailMode::Hang, 1)?;
    let hung = Request::post(&server.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .timeout(Duration::from_millis(700))
        .body(form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "c"),
            ("client_secret", "s"),
        ]))
        .send();
    assert!(hung.is_err(), "a hung request should time out: {hung:?}");
    assert_token(&post_token(&server, "c", "s")?, "after hang");

    // reset() cancels pending failures.
    server.fail_next(FailMode::Status500, 5)?;
    server.reset()?;
    assert_token(&post_token(&server, "c", "s")?, "after reset");
    assert_eq!(server.stats()?, (1, 1));
    Ok(())
}

#[test]
fn jwt_access_tokens_for_an_audience() -> Result<()> {
    let aud = "https://api.example.com";
    let server = OAuthServer::start(
        OAuthOpts::new(TTL, vec![OAuthClient::basic("jwt-client", "s")]).jwt_audience(aud),
    )?;
    let json = assert_token(&basic_token(&server, "jwt-client", "s", "api")?, "jwt");
    let token = json["access_token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {token}");
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1])?)?;
    assert_eq!(payload["aud"], aud);
    assert_eq!(payload["client_id"], "jwt-client");
    assert_eq!(payload["iss"], server.issuer());
    assert_eq!(payload["scope"], "api");
    assert_eq!(
        payload["exp"].as_u64().unwrap() - payload["iat"].as_u64().unwrap(),
        TTL
    );
    Ok(())
}

#[test]
fn tls_with_the_test_pki() -> Result<()> {
    let pki = Pki::generate()?;
    let issuer = "https://login.salesforce.com";
    let server = OAuthServer::start(
        OAuthOpts::new(TTL, vec![OAuthClient::post("c", "s")])
            .tls(pki.server())
            .issuer(issuer),
    )?;
    assert_eq!(
        server.token_url(),
        format!("https://127.0.0.1:{}/token", server.port())
    );
    assert_eq!(server.issuer(), issuer);
    // Control works over its plain-HTTP port while the token port speaks TLS.
    assert_eq!(server.stats()?, (0, 0));
    // The test client speaks no TLS; curl (when present) checks the chain and the token.
    let Some(_) = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).find(|d| d.join("curl").is_file()))
    else {
        eprintln!("tls_with_the_test_pki: no curl on PATH, token over TLS not checked");
        return Ok(());
    };
    for host in ["127.0.0.1", "localhost", "login.salesforce.com"] {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(pki.ca_cert())
            .arg("--resolve")
            .arg(format!("{host}:{}:127.0.0.1", server.port()))
            .args([
                "-d",
                "grant_type=client_credentials&client_id=c&client_secret=s",
            ])
            .arg(format!("https://{host}:{}/token", server.port()))
            .stdin(Stdio::null())
            .output()?;
        assert!(
            out.status.success(),
            "curl via {host}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: Value = serde_json::from_slice(&out.stdout)?;
        assert_eq!(json["expires_in"], TTL, "via {host}: {json}");
    }
    assert_eq!(server.stats()?, (3, 3));
    Ok(())
}
