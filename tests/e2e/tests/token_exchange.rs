//! Tokens obtained with a file on the refresher's host, end to end: `oauth2_token_exchange`
//! (RFC 8693, the subject token is a projected service-account token) and
//! `oauth2_client_credentials` with `client_auth: federated_token_file` (Azure workload
//! identity: the client assertion is the file's content). Both are push-only: the filter
//! cannot read files, so `egressctl token refresh` reads them afresh on every fetch, gets the
//! token from the real authorization server (`oidc-provider` over TLS, with the token-exchange
//! grant of tests/support/oauth-server/grants/token-exchange.mjs) and pushes it to a real
//! Envoy, whose upstream (a TLS echo) sees it.
//!
//! The "cluster issuer" is an RSA key made here with openssl; its tokens are signed by `jose`
//! (tests/support/oauth-server/sign-jwt.mjs). The exchange grant verifies subject tokens with
//! `jose` against its public key; the federated client is an oidc-provider `private_key_jwt`
//! client holding the same public key, so oidc-provider itself verifies the assertion (and
//! accepts each `jti` once).
//!
//! With `token_store: redis` it works the same: the refreshers share the token through redis.
//!
//! Needs Envoy, `egress_filter.wasm` (`make wasm`), node + `npm ci` in
//! tests/support/oauth-server, redis-server, python3, openssl; a missing one fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use egress_e2e::*;
use serde_json::{json, Value};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const CLUSTER_ISSUER: &str = "https://cluster.test";
const EXCHANGER: &str = "exchanger";
/// Unique, so a leak is easy to find.
const EXCHANGER_SECRET: &str = "SECRET-exchange-client-5f1c";
const AZURE_APP: &str = "azure-app";

fn openssl(args: &[&str]) -> Result<()> {
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
    Ok(())
}

/// A JWT signed by `jose` with `key` (RS256).
fn sign(key: &Path, claims: Value) -> String {
    jose_sign(&json!({"alg": "RS256", "key_file": key.display().to_string(), "claims": claims}))
        .unwrap()
}

fn now() -> u64 {
    now_unix_ms() / 1000
}

/// Everything one test runs: the authorization server, the echo target, Envoy compiled from
/// a config with targets `crm` (token exchange) and `azure` (federated client assertion).
struct Setup {
    server: OAuthServer,
    _echo: Standin,
    envoy: Envoy,
    base: String,
    config: PathBuf,
    out: PathBuf,
    /// The cluster issuer's private key.
    cluster_key: PathBuf,
    /// Another key: tokens it signs are refused.
    stranger_key: PathBuf,
    subject_file: PathBuf,
    federated_file: PathBuf,
    compile_output: String,
    dir: TempDir,
}

impl Setup {
    fn start() -> Result<Setup> {
        Self::start_with(None)
    }

    /// With `token_store: redis` at `redis` when given.
    fn start_with(redis: Option<&Redis>) -> Result<Setup> {
        let dir = scratch_dir()?;
        let d = dir.path();
        let (cluster_key, cluster_pub) = (d.join("cluster.key"), d.join("cluster.pub.pem"));
        let stranger_key = d.join("stranger.key");
        for k in [&cluster_key, &stranger_key] {
            openssl(&[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                k.to_str().unwrap(),
            ])?;
        }
        openssl(&[
            "pkey",
            "-in",
            cluster_key.to_str().unwrap(),
            "-pubout",
            "-out",
            cluster_pub.to_str().unwrap(),
        ])?;
        let pki = Pki::generate()?;
        let server = OAuthServer::start(
            OAuthOpts::new(
                600,
                vec![
                    OAuthClient::basic(EXCHANGER, EXCHANGER_SECRET)
                        .grant_types(&[TOKEN_EXCHANGE])
                        .scopes(&["api"]),
                    OAuthClient::private_key_jwt(AZURE_APP, &cluster_pub, "cluster-1", "RS256")
                        .scopes(&["api"]),
                ],
            )
            .tls(pki.server())
            .config(
                "token_exchange",
                json!({
                    "issuer": CLUSTER_ISSUER,
                    "public_key": cluster_pub.display().to_string(),
                    "subject_audience": "sts.test",
                    "audience": "crm-api",
                }),
            ),
        )?;
        let echo = Standin::start(StandinOpts::new("crm").tls(pki.server()))?;
        let (listen, admin, push) = (free_port()?, free_port()?, free_port()?);
        let subject_file = d.join("sa-token");
        let federated_file = d.join("azure-identity-token");
        let target = |name: &str, auth: String| {
            format!(
                "    {name}:\n      url: \"https://127.0.0.1:{port}/api\"\n      tls:\n        ca_cert: \"{ca}\"\n      auth:\n{auth}",
                port = echo.port(),
                ca = pki.ca_cert().display(),
            )
        };
        let exchange = format!(
            "        type: oauth2_token_exchange\n        token_url: \"{url}\"\n        \
             subject_token_file: \"{file}\"\n        audience: crm-api\n        \
             resource: \"https://crm.test/\"\n        scopes: [api]\n        \
             client_id: {EXCHANGER}\n        client_secret: \"{EXCHANGER_SECRET}\"\n",
            url = server.token_url(),
            file = subject_file.display(),
        );
        let federated = format!(
            "        type: oauth2_client_credentials\n        token_url: \"{url}\"\n        \
             client_id: {AZURE_APP}\n        client_auth: federated_token_file\n        \
             federated_token_file: \"{file}\"\n        scopes: [api]\n",
            url = server.token_url(),
            file = federated_file.display(),
        );
        let store = redis.map_or(String::new(), |r| {
            format!(
                "  token_store:\n    type: redis\n    redis:\n      address: \"{}\"\n",
                r.addr()
            )
        });
        let config_text = format!(
            "http:\n  addr: \"127.0.0.1:{listen}\"\negress:\n{store}  targets:\n{}{}  routes:\n\
             \x20   - path_prefix: /egress/crm\n      target: crm\n      strip_prefix: /egress/crm\n\
             \x20   - path_prefix: /egress/azure\n      target: azure\n      strip_prefix: /egress/azure\n\
             endpoints:\n  egress: /egress\n  ready: /ready\n",
            target("crm", exchange),
            target("azure", federated),
        );
        let config = d.join("config.yaml");
        std::fs::write(&config, config_text)?;
        let out = d.join("out");
        let compiled = compile_command(&config, &out, admin, Engine::Wasm)?
            .args(["--push-addr", &format!("127.0.0.1:{push}")])
            .stdin(Stdio::null())
            .output()?;
        let compile_output = output_text(&compiled);
        let envoy = envoy_from_compile(&compiled, &out, admin, &["--concurrency", "2"])?;
        Ok(Setup {
            server,
            _echo: echo,
            envoy,
            base: format!("http://127.0.0.1:{listen}"),
            config,
            out,
            cluster_key,
            stranger_key,
            subject_file,
            federated_file,
            compile_output,
            dir,
        })
    }

    /// A projected service-account token of the cluster issuer for `sub`, signed by `key`.
    fn write_subject_token(&self, key: &Path, sub: &str) -> String {
        let t = sign(
            key,
            json!({"iss": CLUSTER_ISSUER, "sub": sub, "aud": "sts.test",
                   "iat": now(), "exp": now() + 600}),
        );
        // As the kubelet writes it: no newline; a trailing one is tolerated (tested in core).
        std::fs::write(&self.subject_file, format!("{t}\n")).unwrap();
        t
    }

    /// A federated assertion for the Azure app (iss = sub = client id, aud the token
    /// endpoint, a fresh jti), signed by the cluster issuer.
    fn write_federated_token(&self, jti: &str) -> String {
        let t = sign(
            &self.cluster_key,
            json!({"iss": AZURE_APP, "sub": AZURE_APP, "aud": self.server.token_url(),
                   "jti": jti, "iat": now(), "exp": now() + 600}),
        );
        std::fs::write(&self.federated_file, &t).unwrap();
        t
    }

    fn get(&self, path: &str) -> Result<Response> {
        Request::get(&format!("{}{path}", self.base)).send()
    }

    fn refresh(&self) -> (Option<i32>, String) {
        let out = token_refresh(&self.config, &self.out, &[]).unwrap();
        (out.status.code(), output_text(&out))
    }

    /// Waits until requests through `route` carry a token other than `not`; returns it.
    fn wait_new_token(&self, route: &str, not: Option<&str>) -> Result<String> {
        wait_until(format!("{route} to carry a new pushed token"), || {
            let r = self.get(&format!("{route}/x"))?;
            if r.status != 200 {
                return Ok(Probe::Pending(format!("{} {}", r.status, r.body)));
            }
            let t = bearer(&r)?;
            Ok(if Some(t.as_str()) == not {
                Probe::Pending("still the old token".into())
            } else {
                Probe::Ready(t)
            })
        })
    }
}

#[test]
fn tokens_from_a_subject_token_file_and_a_federated_assertion_file_are_fetched_and_pushed() {
    let s = Setup::start().unwrap();
    // compile says both are push-only, and why.
    for t in ["crm", "azure"] {
        assert!(
            s.compile_output.contains(t) && s.compile_output.contains("token refresh"),
            "{}",
            s.compile_output
        );
    }
    for f in ["envoy.yaml", "lds.json", "cds.yaml", "filter.json"] {
        let body = std::fs::read_to_string(s.out.join(f)).unwrap();
        assert!(
            !body.contains(EXCHANGER_SECRET),
            "{f} holds the client secret"
        );
    }
    // Nothing pushed yet: 503, and the proxy did not try to fetch.
    for route in ["/egress/crm", "/egress/azure"] {
        let r = s.get(&format!("{route}/x")).unwrap();
        assert_eq!(r.status, 503, "{}", r.body);
        assert_eq!(r.json().unwrap()["error"], "credentials_unavailable");
    }
    assert_eq!(s.server.stats().unwrap(), (0, 0));

    let subject = s.write_subject_token(&s.cluster_key, "system:serviceaccount:egress:crm-v1");
    let assertion = s.write_federated_token("jti-1");
    let (code, said) = s.refresh();
    assert_eq!(code, Some(0), "{said}\n{}", s.server.log());
    assert!(said.contains("crm: token fetched (expires "), "{said}");
    assert!(said.contains("azure: token fetched (expires "), "{said}");
    let crm = s.wait_new_token("/egress/crm", None).unwrap();
    let azure = s.wait_new_token("/egress/azure", None).unwrap();
    s.server.check_issued(&crm, EXCHANGER).unwrap();
    s.server.check_issued(&azure, AZURE_APP).unwrap();
    let log = s.server.log();
    assert!(
        log.contains(&format!(
            "token-exchange: issued client={EXCHANGER} sub=system:serviceaccount:egress:crm-v1 audience=crm-api resource=https://crm.test/"
        )),
        "{log}"
    );
    for secret in [subject.as_str(), &assertion, &crm, &azure, EXCHANGER_SECRET] {
        assert!(!said.contains(secret), "printed a secret: {said}");
    }

    // The files are rotated: the next refresh reads the new content. The exchange names the
    // new subject; the old assertion could not be used again (its jti is spent), so the
    // federated token proves the new file was read.
    s.write_subject_token(&s.cluster_key, "system:serviceaccount:egress:crm-v2");
    s.write_federated_token("jti-2");
    let (code, said) = s.refresh();
    assert_eq!(code, Some(0), "{said}\n{}", s.server.log());
    let crm2 = s.wait_new_token("/egress/crm", Some(&crm)).unwrap();
    let azure2 = s.wait_new_token("/egress/azure", Some(&azure)).unwrap();
    s.server.check_issued(&crm2, EXCHANGER).unwrap();
    s.server.check_issued(&azure2, AZURE_APP).unwrap();
    assert!(
        s.server
            .log()
            .contains("sub=system:serviceaccount:egress:crm-v2"),
        "{}",
        s.server.log()
    );
    // The spent assertion again: oidc-provider refuses it, nothing is pushed for azure.
    std::fs::write(&s.federated_file, &assertion).unwrap();
    let (code, said) = s.refresh();
    assert_eq!(code, Some(3), "{said}");
    assert!(
        said.contains("azure: ") && said.contains("HTTP 401"),
        "{said}"
    );
    assert!(!said.contains(&assertion), "{said}");
    assert_eq!(bearer(&s.get("/egress/azure/y").unwrap()).unwrap(), azure2);
    drop(s.dir);
}

#[test]
fn bad_file_content_is_a_clear_error_and_nothing_is_pushed() {
    let s = Setup::start().unwrap();
    s.write_subject_token(&s.cluster_key, "system:serviceaccount:egress:crm");
    s.write_federated_token("jti-ok");
    let (code, said) = s.refresh();
    assert_eq!(code, Some(0), "{said}\n{}", s.server.log());
    let crm = s.wait_new_token("/egress/crm", None).unwrap();
    let (_, before) = status_json(&s.out, &[]).unwrap();
    let version = target_status(&before, "crm")["version"].clone();
    s.server.reset().unwrap();

    // Empty, missing, two tokens, binary: refused before any request, with the field and
    // the path named; no secret printed.
    let two = "SECRET-line-one\nSECRET-line-two\n".to_string();
    let cases: Vec<(&str, Option<&[u8]>)> = vec![
        ("is empty", Some(b"\n")),
        ("more than one line", Some(two.as_bytes())),
        ("not UTF-8", Some(b"\xff\xfeSECRET")),
        ("No such file", None),
    ];
    for (i, (expect, content)) in cases.into_iter().enumerate() {
        // The other target is not held back by this one (a fresh assertion each round).
        s.write_federated_token(&format!("jti-round-{i}"));
        match content {
            Some(c) => std::fs::write(&s.subject_file, c).unwrap(),
            None => {
                let _ = std::fs::remove_file(&s.subject_file);
            }
        }
        let (code, said) = s.refresh();
        assert_eq!(code, Some(3), "{expect}: {said}");
        assert!(
            said.contains("crm: ")
                && said.contains("subject_token_file")
                && said.contains(&s.subject_file.display().to_string())
                && said.contains(expect),
            "{expect}: {said}"
        );
        assert!(!said.contains("SECRET"), "{said}");
        assert!(said.contains("azure: token fetched"), "{said}");
    }
    // Nothing was asked of the server for crm.
    assert_eq!(
        s.server.stats_json().unwrap()["successes_by_client"][EXCHANGER],
        Value::Null
    );

    // A well-formed token of another issuer: the server refuses it (invalid_grant, 400).
    let forged = s.write_subject_token(&s.stranger_key, "system:serviceaccount:egress:crm");
    let (code, said) = s.refresh();
    assert_eq!(code, Some(3), "{said}");
    assert!(
        said.contains("crm: ") && said.contains("HTTP 400"),
        "{said}"
    );
    assert!(!said.contains(&forged), "{said}");

    // Nothing pushed for crm all along: same version, same token.
    let (_, after) = status_json(&s.out, &[]).unwrap();
    assert_eq!(target_status(&after, "crm")["version"], version, "{after}");
    assert_eq!(bearer(&s.get("/egress/crm/z").unwrap()).unwrap(), crm);
    let _ = s.envoy.log_tail();
}

#[test]
fn with_the_redis_store_refreshers_share_the_exchanged_token() {
    let redis = Redis::start().unwrap();
    let s = Setup::start_with(Some(&redis)).unwrap();
    s.write_subject_token(&s.cluster_key, "system:serviceaccount:egress:crm");
    s.write_federated_token("jti-redis-1");
    let (code, said) = s.refresh();
    assert_eq!(code, Some(0), "{said}\n{}", s.server.log());
    assert!(said.contains("crm: token fetched"), "{said}");
    let crm = s.wait_new_token("/egress/crm", None).unwrap();
    let azure = s.wait_new_token("/egress/azure", None).unwrap();
    // A second refresher run finds both tokens in redis: no exchange, no assertion spent,
    // the same tokens pushed (even with the files gone).
    std::fs::remove_file(&s.subject_file).unwrap();
    std::fs::remove_file(&s.federated_file).unwrap();
    let (code, said) = s.refresh();
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("crm: token read from redis")
            && said.contains("azure: token read from redis"),
        "{said}"
    );
    assert_eq!(s.server.stats().unwrap(), (2, 2));
    assert_eq!(bearer(&s.get("/egress/crm/r").unwrap()).unwrap(), crm);
    assert_eq!(bearer(&s.get("/egress/azure/r").unwrap()).unwrap(), azure);
    for t in ["crm", "azure"] {
        assert_eq!(
            redis.command(&format!("EXISTS egress:tokens:{t}")).unwrap(),
            ":1"
        );
    }
}
