//! Caller identity end to end, real Envoy: the egress listener speaks TLS and verifies client
//! certificates (SPIFFE URI SANs, made here with openssl; one from another CA is refused in the
//! handshake); JWTs signed by an independent library (`jose`, via
//! tests/support/oauth-server/sign-jwt.mjs) with HS256, RS256 (in a cookie), ES256 and EdDSA;
//! JWT access tokens from the real oidc-provider server (its JWKS given as `jwks_file`); the
//! caller's token never reaches the upstream; the request log names the caller.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use egress_e2e::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const HS_SECRET: &str = "gateway-shared-secret-0123456789abcdef";

fn sh(dir: &Path, script: &str) {
    let out = Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The callers' PKI and signing keys, made with openssl: a mesh CA, the listener's server
/// certificate, client certificates with SPIFFE URI SANs, and one from another CA.
fn make_pki(dir: &Path) {
    sh(
        dir,
        r#"
ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $1.key -out $1.crt -days 2 -subj /CN=$1 \
       -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null; }
leaf() { # name ca ext
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $1.key -out $1.csr -subj /CN=$1 2>/dev/null
  printf "%b" "$3" > $1.ext
  openssl x509 -req -in $1.csr -CA $2.crt -CAkey $2.key -CAcreateserial -out $1.crt -days 2 -extfile $1.ext 2>/dev/null; }
ca mesh-ca
ca other-ca
leaf egress mesh-ca "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
leaf billing mesh-ca "subjectAltName=URI:spiffe://jia.app/billing/invoices\nextendedKeyUsage=clientAuth\n"
leaf evil mesh-ca "subjectAltName=URI:spiffe://jia.app/billing-evil\nextendedKeyUsage=clientAuth\n"
leaf stranger other-ca "subjectAltName=URI:spiffe://jia.app/billing/invoices\nextendedKeyUsage=clientAuth\n"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rs.key 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out es.key 2>/dev/null
openssl genpkey -algorithm ed25519 -out ed.key 2>/dev/null
for k in rs es ed; do openssl pkey -in $k.key -pubout -out $k.pub; done
"#,
    );
}

/// A JWT signed by `jose` (not the proxy's library).
fn sign(spec: Value) -> String {
    jose_sign(&spec).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(iss: &str, sub: &str, roles: &[&str]) -> Value {
    json!({"iss": iss, "sub": sub, "aud": "egress-proxy", "roles": roles,
           "iat": now(), "nbf": now() - 5, "exp": now() + 600})
}

struct Proxy {
    dir: TempDir,
    listen: u16,
    envoy: Envoy,
    _crm: Standin,
    _oauth: OAuthServer,
    oauth_client: (String, String),
    oauth_token_url: String,
}

fn config(dir: &Path, listen: u16, crm: &Standin, oauth: &OAuthServer) -> String {
    let d = dir.display();
    format!(
        r#"
http: {{ addr: "127.0.0.1:{listen}" }}
egress:
  callers:
    mtls:
      server_cert: {d}/egress.crt
      server_key: {d}/egress.key
      client_ca: {d}/mesh-ca.crt
      require_client_cert: false
    jwt:
      - issuer: auth-service
        audiences: [egress-proxy]
        algorithms: [HS256]
        secret: "{HS_SECRET}"
      - issuer: crm-auth
        audiences: [egress-proxy]
        algorithms: [RS256]
        public_key: {d}/rs.pub
        from_cookies: [access_token]
      - issuer: edge
        audiences: [egress-proxy]
        algorithms: [ES256]
        public_key: {d}/es.pub
      - issuer: ed
        audiences: [egress-proxy]
        algorithms: [EdDSA]
        public_key: {d}/ed.pub
      - issuer: "{iss}"
        audiences: ["https://api.egress.test"]
        algorithms: [RS256]
        jwks_file: {d}/oidc-jwks.json
  targets:
    crm:
      url: {crm_url}
      auth: {{ type: api_key, header: X-Api-Key, key: SECRET-crm-key }}
      allow:
        spiffe_ids: ["spiffe://jia.app/billing/*"]
        subjects: [user-service, egress-client]
        roles: [crm]
  routes:
    - path_prefix: /egress/crm
      target: crm
    - path_prefix: /egress/admin
      target: crm
      allow: {{ roles: [crm-admin] }}
logger: {{ output: {d}/requests.log }}
"#,
        iss = oauth.issuer(),
        crm_url = crm.url("/api"),
    )
}

impl Proxy {
    fn start(engine: Engine) -> Proxy {
        let dir = scratch_dir().unwrap();
        make_pki(dir.path());
        let crm = Standin::start(StandinOpts::new("crm")).unwrap();
        let oauth = OAuthServer::start(
            OAuthOpts::new(
                600,
                vec![OAuthClient::basic("egress-client", "SECRET-oidc")],
            )
            .jwt_audience("https://api.egress.test"),
        )
        .unwrap();
        let jwks = get(&oauth.url("/jwks")).unwrap();
        assert_eq!(jwks.status, 200, "{}", jwks.body);
        std::fs::write(dir.path().join("oidc-jwks.json"), &jwks.body).unwrap();
        let listen = free_port().unwrap();
        let admin = free_port().unwrap();
        let cfg = dir.path().join("config.yaml");
        std::fs::write(&cfg, config(dir.path(), listen, &crm, &oauth)).unwrap();
        let out = dir.path().join("out");
        let o = compile_command(&cfg, &out, admin, engine)
            .unwrap()
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{engine}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let envoy = Envoy::start(&out.join("envoy.yaml"), &[]).unwrap();
        envoy.wait_ready(&format!("127.0.0.1:{admin}")).unwrap();
        let token_url = oauth.token_url();
        Proxy {
            dir,
            listen,
            envoy,
            _crm: crm,
            _oauth: oauth,
            oauth_client: ("egress-client".into(), "SECRET-oidc".into()),
            oauth_token_url: token_url,
        }
    }

    fn file(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    /// A request over TLS with curl: optionally a client certificate `cert` (stem of
    /// `<stem>.crt`/`.key`), and headers. `Err(curl exit code)` when the handshake fails.
    fn call(
        &self,
        path: &str,
        cert: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Value), i32> {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "30", "--cacert"])
            .arg(self.file("mesh-ca.crt"))
            .args(["-o", "-", "-w", "\n%{http_code}"]);
        if let Some(stem) = cert {
            cmd.arg("--cert")
                .arg(self.file(&format!("{stem}.crt")))
                .arg("--key")
                .arg(self.file(&format!("{stem}.key")));
        }
        for (k, v) in headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        cmd.arg(format!("https://127.0.0.1:{}{path}", self.listen));
        let out = cmd.output().unwrap();
        if !out.status.success() {
            return Err(out.status.code().unwrap_or(-1));
        }
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, status) = text.rsplit_once('\n').unwrap();
        Ok((
            status.parse().unwrap(),
            serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
        ))
    }

    fn log_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(self.file("requests.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn oidc_token(&self) -> String {
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.oauth_client.0, self.oauth_client.1));
        let r = Request::post(&self.oauth_token_url)
            .header("authorization", &format!("Basic {basic}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&resource=https%3A%2F%2Fapi.egress.test")
            .send()
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        r.json().unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

fn forwarded(r: Result<(u16, Value), i32>) -> Value {
    let (status, body) = r.unwrap_or_else(|code| panic!("curl failed with {code}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["service"], "crm", "{body}");
    assert_eq!(body["headers"]["x-api-key"], "SECRET-crm-key");
    body
}

fn refused(r: Result<(u16, Value), i32>, status: u16, code: &str) {
    let (s, body) = r.unwrap_or_else(|c| panic!("curl failed with {c}"));
    assert_eq!((s, body["error"].as_str()), (status, Some(code)), "{body}");
}

fn callers_by_client_certificate_and_by_jwt_are_verified_and_allowed_per_route(engine: Engine) {
    if !oauth_server_or_skip("callers e2e").unwrap() {
        return;
    }
    let p = Proxy::start(engine);

    // SPIFFE client certificates.
    let body = forwarded(p.call("/egress/crm/x", Some("billing"), &[]));
    assert!(body["headers"].get("authorization").is_none());
    refused(p.call("/egress/crm/x", Some("evil"), &[]), 403, "forbidden");
    refused(
        p.call("/egress/admin/x", Some("billing"), &[]),
        403,
        "forbidden",
    );
    let e = p.call("/egress/crm/x", Some("stranger"), &[]).unwrap_err();
    assert_ne!(
        e, 0,
        "a certificate from another CA must fail the handshake"
    );
    refused(p.call("/egress/crm/x", None, &[]), 401, "unauthenticated");

    // JWTs from an independent library, every family.
    let hs = sign(json!({"alg": "HS256", "secret": HS_SECRET,
                         "claims": claims("auth-service", "user-service", &[])}));
    let body = forwarded(p.call(
        "/egress/crm/x",
        None,
        &[("authorization", &format!("Bearer {hs}"))],
    ));
    assert!(
        body["headers"].get("authorization").is_none(),
        "the caller's token reached the upstream"
    );
    let rs = sign(json!({"alg": "RS256", "key_file": p.file("rs.key"),
                         "claims": claims("crm-auth", "crm-ui", &["crm", "crm-admin"])}));
    let cookie = format!("theme=dark; access_token={rs}; lang=en");
    let body = forwarded(p.call("/egress/admin/x", None, &[("cookie", &cookie)]));
    assert_eq!(body["headers"]["cookie"], "theme=dark; lang=en");
    assert!(
        !body.to_string().contains(&rs),
        "the caller's token reached the upstream"
    );
    let es = sign(json!({"alg": "ES256", "key_file": p.file("es.key"),
                         "claims": claims("edge", "svc", &["crm"])}));
    forwarded(p.call(
        "/egress/crm/x",
        None,
        &[("authorization", &format!("Bearer {es}"))],
    ));
    let ed = sign(json!({"alg": "EdDSA", "key_file": p.file("ed.key"),
                         "claims": claims("ed", "svc", &["hr"])}));
    refused(
        p.call(
            "/egress/crm/x",
            None,
            &[("authorization", &format!("Bearer {ed}"))],
        ),
        403,
        "forbidden",
    );

    // Hostile tokens: alg confusion (HS256 with the RSA public key as the secret), expired.
    let pem = std::fs::read_to_string(p.file("rs.pub")).unwrap();
    let confused = sign(json!({"alg": "HS256", "secret": pem,
                               "claims": claims("crm-auth", "crm-ui", &["crm"])}));
    refused(
        p.call(
            "/egress/crm/x",
            None,
            &[("cookie", &format!("access_token={confused}"))],
        ),
        401,
        "invalid_token",
    );
    let mut old = claims("auth-service", "user-service", &[]);
    old["exp"] = json!(now() - 3600);
    old["iat"] = json!(now() - 7200);
    old["nbf"] = json!(now() - 7200);
    let expired = sign(json!({"alg": "HS256", "secret": HS_SECRET, "claims": old}));
    let r = p.call(
        "/egress/crm/x",
        None,
        &[("authorization", &format!("Bearer {expired}"))],
    );
    refused(r, 401, "invalid_token");

    // A JWT access token from the real oidc-provider (RS256, its JWKS).
    let at = p.oidc_token();
    let body = forwarded(p.call(
        "/egress/crm/x",
        None,
        &[("authorization", &format!("Bearer {at}"))],
    ));
    assert!(body["headers"].get("authorization").is_none());

    // Counters per target, and the request log names the caller after the status.
    wait_for("the refusal counters", || {
        Ok(p.envoy
            .stat("wasmcustom.egress.crm.caller_refused_403")?
            .unwrap_or(0)
            >= 3
            && p.envoy
                .stat("wasmcustom.egress.crm.caller_refused_401")?
                .unwrap_or(0)
                >= 3)
    })
    .unwrap();
    wait_for("request log lines with callers", || {
        let lines = p.log_lines();
        Ok(lines
            .iter()
            .any(|l| l["caller"] == "spiffe://jia.app/billing/invoices" && l["status"] == 200)
            && lines
                .iter()
                .any(|l| l["caller"] == "auth-service/user-service")
            && lines
                .iter()
                .any(|l| l["caller"] == "spiffe://jia.app/billing-evil" && l["status"] == 403))
    })
    .unwrap();
    // The HS secret is a reference in the listener config, never its value.
    let dump = p.envoy.admin_get("/config_dump").unwrap().body;
    assert!(
        !dump.contains(HS_SECRET),
        "the caller HS secret is in Envoy's admin interface"
    );
    let lds = std::fs::read_to_string(p.file("out/lds.json")).unwrap();
    assert!(
        !lds.contains(HS_SECRET),
        "the caller HS secret is in lds.json"
    );
    // `apply` changes an allow list without a restart.
    let cfg = p.file("config.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        r#"spiffe_ids: ["spiffe://jia.app/billing/*"]"#,
        r#"spiffe_ids: ["spiffe://jia.app/billing/*", "spiffe://jia.app/billing-evil"]"#,
    );
    std::fs::write(&cfg, text).unwrap();
    let timeout = patience().as_secs().to_string();
    let o = egressctl()
        .unwrap()
        .args([
            "apply",
            cfg.to_str().unwrap(),
            "--out",
            p.file("out").to_str().unwrap(),
            "--timeout-secs",
            &timeout,
            "--engine",
            engine.as_str(),
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    wait_for("the applied allow list to admit billing-evil", || {
        Ok(matches!(
            p.call("/egress/crm/x", Some("evil"), &[]),
            Ok((200, _))
        ))
    })
    .unwrap();
    assert!(p.envoy.exited().is_none());
    let log = std::fs::read_to_string(p.file("requests.log")).unwrap();
    assert!(
        !log.contains(&hs) && !log.contains(&rs),
        "a caller token reached the log"
    );
}

engine_tests!(callers_by_client_certificate_and_by_jwt_are_verified_and_allowed_per_route,);
