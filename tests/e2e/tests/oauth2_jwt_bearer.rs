//! `oauth2_jwt_bearer` (RFC 7523 section 2.1) end to end: real Envoy running the built
//! `egress_filter.wasm`, the real OAuth2 server (`oidc-provider`, over TLS verified with the
//! test CA) with the JWT-bearer grant of `tests/support/oauth-server/grants/jwt-bearer.mjs`,
//! which verifies each assertion with `jose` against the public key registered for its
//! issuer, and a TLS echo stand-in as the target `crm`.
//!
//! - Inline `issuer` / `subject` / `private_key`: the filter signs and fetches itself.
//! - A Google-style `service_account_file`: push-only (the filter cannot read files);
//!   `egressctl compile` says so, `egressctl token refresh` reads the key file, fetches and
//!   pushes, and the upstream receives the issued token.
//!
//! Needs Envoy, `egress_filter.wasm` (`make wasm`), node + `npm ci` in
//! tests/support/oauth-server, python3, openssl; a missing one fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use egress_e2e::*;
use serde_json::json;

/// The public client the server registers the grant for (the proxy sends it as client_id).
const GRANT_CLIENT: &str = "jwt-bearer-e2e";
const ISSUER: &str = "egress-e2e@example.com";
const SUBJECT: &str = "svc-reports";
const SA_EMAIL: &str = "egress-sa@egress-test.iam.gserviceaccount.com";
const SA_KID: &str = "5f1c0a7e9d2b";

/// An RSA private key (PKCS#8 PEM) and its public half, made by openssl in `dir`.
fn rsa_keypair(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub.pem"));
    for args in [
        vec![
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            private.to_str().unwrap(),
        ],
        vec![
            "pkey",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ],
    ] {
        let out = Command::new("openssl")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .context("running openssl")?;
        ensure!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((private, public))
}

/// The server (TLS) with one registered JWT-bearer issuer.
fn server(issuer: serde_json::Value) -> Result<OAuthServer> {
    OAuthServer::start(
        OAuthOpts::new(600, vec![OAuthClient::basic("unused", "unused-secret")])
            .tls(Pki::generate()?.server())
            .config(
                "jwt_bearer",
                json!({ "client_id": GRANT_CLIENT, "issuers": [issuer] }),
            ),
    )
}

/// The body of every PEM the test wrote must appear in no file of `dir` and no output.
fn assert_no_key(key: &Path, texts: &[(&str, String)]) -> Result<()> {
    let pem = std::fs::read_to_string(key)?;
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .take(2)
        .collect();
    for (what, text) in texts {
        ensure!(!text.contains(&body), "the private key is in {what}");
    }
    Ok(())
}

fn dir_text(dir: &Path) -> Result<String> {
    let mut all = String::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_file() {
            all += &String::from_utf8_lossy(&std::fs::read(&p)?);
        }
    }
    Ok(all)
}

#[test]
fn the_filter_signs_the_assertion_and_the_upstream_gets_the_issued_token() -> Result<()> {
    let dir = scratch_dir()?;
    let (key, public) = rsa_keypair(dir.path(), "issuer")?;
    let server = server(json!({
        "iss": ISSUER, "public_key": public.display().to_string(), "kid": "k-e2e",
        "alg": "RS256", "subjects": [SUBJECT], "scopes": ["api"],
    }))?;
    let auth = format!(
        "type: oauth2_jwt_bearer\ntoken_url: \"{}\"\nclient_id: {GRANT_CLIENT}\nissuer: \"{ISSUER}\"\n\
         subject: {SUBJECT}\nprivate_key: \"{}\"\nkey_id: k-e2e\nscopes: [api]\n\
         refresh_before_expiry: 1s\ntoken_timeout: 5s",
        server.token_url(),
        key.display()
    );
    let proxy = OAuth2Proxy::start(
        &OAuth2ProxyOpts::new(&server.token_url(), "-", "-").auth(TargetAuth::Yaml(auth)),
    )?;
    ensure!(
        !proxy.compile_output.contains("push-only"),
        "an inline key runs in the filter: {}",
        proxy.compile_output
    );
    proxy.wait_token()?;
    let token = bearer(&proxy.get(&format!("{CRM}/reports?q=1"))?)?;
    server.check_issued(&token, GRANT_CLIENT)?;
    let stats = server.stats_json()?;
    assert_eq!(stats["successes_by_client"][GRANT_CLIENT], 1, "{stats}");
    assert_eq!(proxy.stat("wasmcustom.egress.crm.tokens_fetched")?, 1);
    // The server verified the claims the filter signed (issuer, subject, scope).
    let log = server.log();
    assert!(
        log.contains(&format!(
            "jwt-bearer: 200 iss={ISSUER} sub={SUBJECT} scope=api"
        )),
        "{log}"
    );
    assert_no_key(
        &key,
        &[
            ("the Envoy log", proxy.envoy.log()),
            ("the compile output", proxy.compile_output.clone()),
        ],
    )?;
    // The key reaches Envoy through secrets.env only (sealed in the filter config).
    assert_no_key(
        &key,
        &[(
            "the filter config",
            std::fs::read_to_string(proxy.out.join("filter.json")).unwrap_or_default(),
        )],
    )?;
    Ok(())
}

#[test]
fn a_service_account_key_is_push_only_and_token_refresh_fetches_and_pushes() -> Result<()> {
    let dir = scratch_dir()?;
    let (key, public) = rsa_keypair(dir.path(), "sa")?;
    let server = server(json!({
        "iss": SA_EMAIL, "public_key": public.display().to_string(), "kid": SA_KID,
        "alg": "RS256", "scopes": ["api"],
    }))?;
    // A Google service-account key file, its token_uri the test server.
    let sa_file = dir.path().join("service-account.json");
    std::fs::write(
        &sa_file,
        serde_json::to_vec_pretty(&json!({
            "type": "service_account",
            "project_id": "egress-test",
            "private_key_id": SA_KID,
            "private_key": std::fs::read_to_string(&key)?,
            "client_email": SA_EMAIL,
            "client_id": "104211223344556677889",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": server.token_url(),
        }))?,
    )?;
    let auth = format!(
        "type: oauth2_jwt_bearer\nservice_account_file: \"{}\"\nclient_id: {GRANT_CLIENT}\n\
         scopes: [api]",
        sa_file.display()
    );
    let proxy = OAuth2Proxy::start(
        &OAuth2ProxyOpts::new(&server.token_url(), "-", "-").auth(TargetAuth::Yaml(auth)),
    )?;
    let said = &proxy.compile_output;
    assert!(
        said.contains("target crm: push-only (auth.service_account_file")
            && said.contains("egressctl token refresh"),
        "{said}"
    );
    // The proxy never fetches: 503 until a token is pushed, and no token request was made.
    let resp = proxy.get(&format!("{CRM}/x"))?;
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert_eq!(server.stats()?.0, 0);

    let out = token_refresh(&proxy.config, &proxy.out, &[&proxy.push_url])?;
    let said = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("crm: token fetched (expires "), "{said}");
    assert!(
        said.contains(&format!("pushed to {} (version ", proxy.push_url)),
        "{said}"
    );
    let token = wait_until("the proxy to inject the pushed token", || {
        let resp = proxy.get(&format!("{CRM}/objects/a"))?;
        Ok(match resp.status {
            200 => Probe::Ready(bearer(&resp)?),
            s => Probe::Pending(format!("{s} {}", resp.body.trim())),
        })
    })?;
    server.check_issued(&token, GRANT_CLIENT)?;
    assert!(!said.contains(&token), "the token was printed: {said}");
    let log = server.log();
    assert!(
        log.contains(&format!("jwt-bearer: 200 iss={SA_EMAIL} sub=- scope=api")),
        "{log}"
    );
    assert_eq!(server.stats()?, (1, 1));
    assert_no_key(
        &key,
        &[
            ("the state directory", dir_text(&proxy.out)?),
            ("the refresh output", said.clone()),
            ("the Envoy log", proxy.envoy.log()),
        ],
    )?;
    Ok(())
}
