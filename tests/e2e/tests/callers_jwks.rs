//! `jwks_url` end to end, real Envoy: the egress proxy verifies JWT access tokens of the real
//! oidc-provider by fetching its JWKS over TLS (verified against the test CA) through the
//! cluster `egressctl compile` renders. The issuer is added by `egressctl apply` to a running
//! proxy (a new cluster, no restart); then the provider restarts with fresh signing keys (a
//! key rotation, new `kid`) and a token signed by the new key is accepted after the
//! unknown-`kid` refresh, the proxy never restarted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use egress_e2e::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const AUDIENCE: &str = "https://api.egress.test";

fn config(listen: u16, crm: &Standin, jwks: Option<(&OAuthServer, &Path)>) -> String {
    let issuer = match jwks {
        Some((oauth, ca)) => format!(
            r#"
      - issuer: "{iss}"
        audiences: ["{AUDIENCE}"]
        algorithms: [RS256]
        jwks_url: {url}
        jwks_ca: {ca}"#,
            iss = oauth.issuer(),
            url = oauth.url("/jwks"),
            ca = ca.display(),
        ),
        None => String::new(),
    };
    format!(
        r#"
http: {{ addr: "127.0.0.1:{listen}" }}
egress:
  callers:
    jwt:
      - issuer: gateway
        algorithms: [HS256]
        secret: "gateway-shared-secret-0123456789abcdef"{issuer}
  targets:
    crm:
      url: {crm_url}
      auth: {{ type: api_key, header: X-Api-Key, key: SECRET-crm-key }}
      allow: {{ subjects: [egress-client] }}
  routes:
    - path_prefix: /egress/crm
      target: crm
"#,
        crm_url = crm.url("/api"),
    )
}

/// A JWT access token from the provider (over TLS, with curl trusting the test CA).
fn access_token(oauth: &OAuthServer, ca: &Path) -> String {
    let basic = base64::engine::general_purpose::STANDARD.encode("egress-client:SECRET-oidc");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(ca)
        .args(["-H", &format!("authorization: Basic {basic}")])
        .args([
            "-d",
            "grant_type=client_credentials&resource=https%3A%2F%2Fapi.egress.test",
        ])
        .arg(oauth.token_url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string()
}

fn kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    v["kid"].as_str().unwrap().to_string()
}

fn call(listen: u16, token: &str) -> (u16, Value) {
    let r = Request::get(&format!("http://127.0.0.1:{listen}/egress/crm/x"))
        .header("authorization", &format!("Bearer {token}"))
        .send()
        .unwrap();
    let body = serde_json::from_str(&r.body).unwrap_or(Value::String(r.body.clone()));
    (r.status, body)
}

fn egressctl_ok(args: &[&str]) {
    let o = egressctl().unwrap().args(args).output().unwrap();
    assert!(
        o.status.success(),
        "egressctl {args:?}\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn jwt_access_tokens_are_verified_through_jwks_url_and_a_key_rotation_is_picked_up(engine: Engine) {
    if !oauth_server_or_skip("jwks_url e2e").unwrap() {
        return;
    }
    let pki = Pki::generate().unwrap();
    let ca = pki.ca_cert();
    let mut oauth = OAuthServer::start(
        OAuthOpts::new(
            600,
            vec![OAuthClient::basic("egress-client", "SECRET-oidc")],
        )
        .tls(pki.server())
        .jwt_audience(AUDIENCE),
    )
    .unwrap();
    let crm = Standin::start(StandinOpts::new("crm")).unwrap();
    let dir = scratch_dir().unwrap();
    let listen = free_port().unwrap();
    let admin = free_port().unwrap();
    let cfg = dir.path().join("config.yaml");
    let out = dir.path().join("out");
    let (cfg_s, out_s) = (cfg.to_str().unwrap(), out.to_str().unwrap());

    // Started without the jwks_url issuer: its tokens are refused.
    std::fs::write(&cfg, config(listen, &crm, None)).unwrap();
    let admin_addr = format!("127.0.0.1:{admin}");
    let compiled = compile_command(&cfg, &out, admin, engine)
        .unwrap()
        .output()
        .unwrap();
    assert!(compiled.status.success(), "{}", output_text(&compiled));
    let envoy = Envoy::start(&out.join("envoy.yaml"), &[]).unwrap();
    envoy.wait_ready(&admin_addr).unwrap();
    let first = access_token(&oauth, &ca);
    let (status, body) = call(listen, &first);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );

    // `apply` adds the issuer: a new cluster (egress_jwks_1) and the filter fetching through it.
    std::fs::write(&cfg, config(listen, &crm, Some((&oauth, &ca)))).unwrap();
    egressctl_ok(&["validate", cfg_s]);
    let timeout = patience().as_secs().to_string();
    egressctl_ok(&[
        "apply",
        cfg_s,
        "--out",
        out_s,
        "--timeout-secs",
        &timeout,
        "--engine",
        engine.as_str(),
    ]);
    let cds = std::fs::read_to_string(out.join("cds.yaml")).unwrap();
    assert!(cds.contains("egress_jwks_1"), "{cds}");
    wait_for(
        "the applied jwks_url issuer to admit the provider's token",
        || Ok(call(listen, &first).0 == 200),
    )
    .unwrap();
    let (status, body) = call(listen, &first);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["service"], "crm");
    assert_eq!(body["headers"]["x-api-key"], "SECRET-crm-key");
    assert!(
        body["headers"].get("authorization").is_none(),
        "the caller's token left"
    );

    // Key rotation: the provider comes back with new signing keys (a new kid).
    oauth.restart().unwrap();
    let rotated = access_token(&oauth, &ca);
    assert_ne!(
        kid(&first),
        kid(&rotated),
        "the provider did not rotate its key"
    );
    // The first request with the new kid waits for the unknown-kid refresh and passes.
    let (status, body) = call(listen, &rotated);
    assert_eq!(status, 200, "{body}\n{}", envoy.log_tail());
    // A token signed by another key presenting the new kid is still refused.
    let mut parts: Vec<&str> = rotated.split('.').collect();
    let forged_sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 256]);
    parts[2] = &forged_sig;
    let forged = parts.join(".");
    let (status, body) = call(listen, &forged);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );
    assert!(envoy.exited().is_none(), "Envoy restarted");
    // Fetched through the cluster, over TLS (Envoy's counters for egress_jwks_1).
    let fetched = envoy
        .stat("cluster.egress_jwks_1.upstream_rq_completed")
        .unwrap()
        .unwrap_or(0);
    assert!(
        fetched >= 2,
        "JWKS fetches through egress_jwks_1: {fetched}"
    );
    let tls = envoy
        .stat("cluster.egress_jwks_1.ssl.handshake")
        .unwrap()
        .unwrap_or(0);
    assert!(tls >= 1, "no TLS handshake towards the JWKS endpoint");
}

engine_tests!(jwt_access_tokens_are_verified_through_jwks_url_and_a_key_rotation_is_picked_up,);
