//! `aws_sigv4` with `web_identity` end to end: `egressctl token refresh` reads the token file,
//! calls `AssumeRoleWithWebIdentity` on `moto_server`, pushes the temporary credentials to a
//! real Envoy 1.40, and requests through Envoy signed with them (`x-amz-security-token`
//! included) are accepted by moto with IAM authentication enforced.
//!
//! Why one moto serves both STS and S3: under enforcement moto answers an unsigned
//! `AssumeRoleWithWebIdentity` with 500, and credentials minted by another moto process are
//! unknown to the enforcing one (`InvalidAccessKeyId`: each process keeps its own STS
//! sessions). So the enforcing moto gets `INITIAL_NO_AUTH_ACTION_COUNT` covering the setup
//! calls (CreateRole, PutRolePolicy) plus the STS calls `token refresh` makes; every request
//! after that, all the S3 traffic through Envoy, has its signature checked with the
//! temporary credentials. A second moto without enforcement mints credentials the first does
//! not know: a target using them is refused, which proves the check is on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "cloud/moto.rs"]
#[allow(dead_code)] // the IAM-user helpers serve tests/aws_sigv4.rs
mod moto;

use anyhow::{Context, Result};
use egress_core::push::{PushSigner, PUSH_PATH};
use egress_core::secret::Secret;
use egress_core::sigv4::pushed::{AwsPushBody, AWS_PUSH_KIND};
use egress_e2e::*;
use moto::Moto;
use std::path::PathBuf;

const ROLE: &str = "arn:aws:iam::123456789012:role/egress";
/// What moto's session tokens start with (never printed by egressctl).
const MOTO_TOKEN_PREFIX: &str = "FQoGZXIvYXdz";

struct Setup {
    moto: Moto,
    _foreign_sts: Moto,
    envoy: Envoy,
    base: String,
    push_url: String,
    config: PathBuf,
    out: PathBuf,
    _state: tempfile::TempDir,
}

fn target(name: &str, moto: &Moto, sts: &Moto, payload: &str) -> String {
    format!(
        "    {name}:\n      url: {url}\n      auth:\n        type: aws_sigv4\n        region: us-east-1\n        service: s3\n        payload: {payload}\n        web_identity:\n          role_arn: {ROLE}\n          token_file: web-identity-token\n          session_name: egress-e2e\n          sts_url: {sts}\n",
        url = moto.url(),
        sts = sts.url(),
    )
}

/// `store`: the `egress.token_store` block (empty: memory).
fn start(store: &str) -> Result<Setup> {
    // Two setup calls, then the two STS calls of `token refresh` (targets wi and wis).
    let moto = Moto::start(Some(4))?;
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::123456789012:oidc-provider/issuer.example"}},"Action":"sts:AssumeRoleWithWebIdentity"}]}"#;
    moto.setup_call(&[
        ("Action", "CreateRole"),
        ("Version", "2010-05-08"),
        ("RoleName", "egress"),
        ("AssumeRolePolicyDocument", trust),
    ])?;
    moto.setup_call(&[
        ("Action", "PutRolePolicy"),
        ("Version", "2010-05-08"),
        ("RoleName", "egress"),
        ("PolicyName", "all"),
        (
            "PolicyDocument",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
        ),
    ])?;
    let foreign = Moto::start(None)?;
    let state = scratch_dir()?;
    std::fs::write(
        state.path().join("web-identity-token"),
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZWdyZXNzOmFwcCJ9.c2ln\n",
    )?;
    let (listen, admin, push) = (free_port()?, free_port()?, free_port()?);
    let mut targets = String::new();
    let mut routes = String::new();
    for (name, sts, payload) in [
        ("wi", &moto, "unsigned"),
        ("wis", &moto, "signed"),
        ("foreign", &foreign, "unsigned"),
    ] {
        targets.push_str(&target(name, &moto, sts, payload));
        routes.push_str(&format!(
            "    - path_prefix: /egress/{name}\n      target: {name}\n      strip_prefix: /egress/{name}\n"
        ));
    }
    let config_text = format!(
        "http:\n  addr: \"127.0.0.1:{listen}\"\negress:\n{store}  targets:\n{targets}  routes:\n{routes}"
    );
    let config = state.path().join("config.yaml");
    std::fs::write(&config, config_text)?;
    let out = state.path().join("out");
    let compiled = compile_command(&config, &out, admin, Engine::Wasm)?
        .args(["--push-addr", &format!("127.0.0.1:{push}")])
        .output()
        .context("running egressctl compile")?;
    let stderr = String::from_utf8_lossy(&compiled.stderr);
    assert!(
        stderr.contains("target wi (aws_sigv4 with web_identity) is push-only")
            && stderr.contains("egressctl token refresh"),
        "compile must say the target is push-only: {stderr}"
    );
    let envoy = envoy_from_compile(&compiled, &out, admin, &[])?;
    Ok(Setup {
        moto,
        _foreign_sts: foreign,
        envoy,
        base: format!("http://127.0.0.1:{listen}"),
        push_url: format!("http://127.0.0.1:{push}"),
        config,
        out,
        _state: state,
    })
}

impl Setup {
    fn send(&self, method: &str, path: &str, body: Option<&[u8]>) -> Response {
        request(method, &format!("{}{path}", self.base), &[], body).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: {e:#}\nenvoy:\n{}\nmoto:\n{}",
                self.envoy.log_tail(),
                self.moto.log()
            )
        })
    }

    fn expect(&self, status: u16, method: &str, path: &str, body: Option<&[u8]>) -> Response {
        let r = self.send(method, path, body);
        assert_eq!(
            r.status,
            status,
            "{method} {path}: {} {}\nenvoy:\n{}\nmoto:\n{}",
            r.status,
            r.body,
            self.envoy.log_tail(),
            self.moto.log()
        );
        r
    }

    /// Pushes a hand-made credentials set, signed with the state directory's push key.
    fn push(&self, body: &AwsPushBody) -> Response {
        let signer =
            PushSigner::from_pem(&std::fs::read_to_string(self.out.join("push.key")).unwrap())
                .unwrap();
        let bytes = serde_json::to_vec(body).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let jti = format!("e2e-{}", now.as_nanos());
        let jwt = signer.sign(&bytes, now.as_secs(), 60, &jti).unwrap();
        Request::post(&format!("{}{PUSH_PATH}", self.push_url))
            .header("authorization", &format!("Bearer {jwt}"))
            .header("content-type", "application/json")
            .body(bytes)
            .send()
            .unwrap()
    }
}

#[test]
fn sts_web_identity_credentials_are_fetched_pushed_and_accepted_by_moto_with_iam_enforced() {
    let s = start("").unwrap();

    // Before any push: 503 credentials_unavailable, nothing reaches moto unsigned.
    let r = s.send("GET", "/egress/wi/bucket-wi?list-type=2", None);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("credentials_unavailable"), "{}", r.body);

    let refreshed = token_refresh(&s.config, &s.out, &[]).unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&refreshed.stdout),
        String::from_utf8_lossy(&refreshed.stderr)
    );
    assert!(
        text.contains("wi: AWS credentials from STS, access key ASIA"),
        "{text}"
    );
    assert!(
        !text.contains(MOTO_TOKEN_PREFIX),
        "a session token was printed: {text}"
    );
    assert!(text.contains("pushed to"), "{text}");
    let key_id = text
        .split("wi: AWS credentials from STS, access key ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap()
        .to_string();

    // Signed with the temporary credentials (and their session token), checked by moto.
    for (route, bucket) in [("wi", "bucket-wi"), ("wis", "bucket-wis")] {
        s.expect(200, "PUT", &format!("/egress/{route}/{bucket}"), None);
        let body = format!("stored with STS credentials via {route}\n");
        s.expect(
            200,
            "PUT",
            &format!("/egress/{route}/{bucket}/k%20one.txt"),
            Some(body.as_bytes()),
        );
        let got = s.expect(
            200,
            "GET",
            &format!("/egress/{route}/{bucket}/k%20one.txt"),
            None,
        );
        assert_eq!(got.body, body, "{route}");
    }

    // Credentials another STS minted are refused by the enforcing moto.
    let r = s.send("GET", "/egress/foreign/bucket-wi?list-type=2", None);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("InvalidAccessKeyId"), "{}", r.body);

    // `egressctl status` shows the web_identity targets as pushed and valid.
    let (code, status) = status_json(&s.out, &[]).unwrap();
    let wi = target_status(&status, "wi");
    assert_eq!(wi["valid"], true, "{status}");
    assert_eq!(wi["source"], "pushed", "{status}");
    assert_eq!(code, Some(0), "{status}");

    // A wrong set (the real key id, another secret and session token) is refused by moto.
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let wrong = AwsPushBody {
        kind: AWS_PUSH_KIND.into(),
        target: "wi".into(),
        access_key_id: key_id,
        secret_access_key: Secret::new("not/the+secret0000000000000000000000000"),
        session_token: Secret::new("FQoGnot-the-session-token="),
        expires_at_ms: expires + 3_600_000,
    };
    let pushed = s.push(&wrong);
    assert_eq!(pushed.status, 200, "{}", pushed.body);
    let refused = wait_until("moto refuses the wrong credentials", || {
        let r = s.send("GET", "/egress/wi/bucket-wi?list-type=2", None);
        Ok(if r.status == 403 || r.status == 400 {
            Probe::Ready(r)
        } else {
            Probe::Pending(format!("{} {}", r.status, r.body))
        })
    })
    .unwrap();
    assert!(
        refused.body.contains("InvalidToken")
            || refused.body.contains("SignatureDoesNotMatch")
            || refused.body.contains("InvalidAccessKeyId"),
        "{}",
        refused.body
    );

    // Credentials that expire: 503 from the proxy once they have, never an unsigned request.
    let short = AwsPushBody {
        expires_at_ms: expires + 2_000,
        ..wrong
    };
    assert_eq!(s.push(&short).status, 200);
    wait_until("the expired credentials give 503", || {
        let r = s.send("GET", "/egress/wi/bucket-wi?list-type=2", None);
        Ok(
            if r.status == 503 && r.body.contains("credentials_unavailable") {
                Probe::Ready(())
            } else {
                Probe::Pending(format!("{} {}", r.status, r.body))
            },
        )
    })
    .unwrap();
}

#[test]
fn token_refresh_watch_stores_in_redis_and_a_second_refresher_reuses_them_without_calling_sts() {
    require_redis().unwrap();
    let redis = Redis::start().unwrap();
    let store = format!(
        "  token_store:\n    type: redis\n    redis:\n      address: \"{}\"\n      key_prefix: \"egress:tokens:\"\n",
        redis.addr()
    );
    let s = start(&store).unwrap();
    // `--watch` fetches and pushes, storing the credentials in redis.
    let mut watcher = Watcher::start(
        &s.config,
        &s.out,
        &[],
        s.out.parent().unwrap().join("watch.log"),
    )
    .unwrap();
    wait_until("the watcher's credentials sign requests", || {
        let r = s.send("PUT", "/egress/wi/bucket-watch", None);
        Ok(if r.status == 200 {
            Probe::Ready(())
        } else {
            Probe::Pending(format!("{} {}\n{}", r.status, r.body, watcher.output()))
        })
    })
    .unwrap();
    let watched = watcher.output();
    assert!(
        watched.contains("wi: AWS credentials from STS"),
        "{watched}"
    );
    assert!(
        watched.contains("wi: pushed AWS credentials to"),
        "{watched}"
    );
    assert!(!watched.contains(MOTO_TOKEN_PREFIX), "{watched}");
    assert_eq!(watcher.stop().unwrap(), Some(0));
    // moto's no-auth budget is spent: another STS call would fail (500). The second refresher
    // takes the stored credentials from redis instead.
    let second = token_refresh(&s.config, &s.out, &[]).unwrap();
    let text = String::from_utf8_lossy(&second.stdout).to_string();
    assert!(
        second.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&second.stderr)
    );
    for t in ["wi", "wis", "foreign"] {
        assert!(
            text.contains(&format!("{t}: AWS credentials read from redis")),
            "{text}"
        );
    }
    assert!(!text.contains(MOTO_TOKEN_PREFIX), "{text}");
    assert_eq!(redis.command("EXISTS egress:tokens:aws/wi").unwrap(), ":1");
    s.expect(200, "PUT", "/egress/wi/bucket-redis", None);
    s.expect(200, "GET", "/egress/wis/bucket-redis?list-type=2", None);
}
