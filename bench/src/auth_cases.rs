//! What cases 8–10 add to the API-key config: callers verified by mTLS (a client certificate
//! with a SPIFFE ID), callers verified by a JWT (HS256, the same token on every request, so the
//! verified-token cache answers), and a target signed with AWS SigV4 (static keys). Also the
//! inputs they need: the callers' PKI (openssl) and the load's JWT (Python's hmac, not the
//! filter's library).

use crate::http::Response;
use crate::procs::{find_program, output};
use anyhow::{anyhow, Context, Result};
use std::path::Path;
use std::process::Command;

/// The SPIFFE ID in the load's client certificate; the only one the target allows.
pub const SPIFFE_ID: &str = "spiffe://bench.test/load";
/// The JWT issuer of case 9 and its HS256 secret.
pub const JWT_ISSUER: &str = "bench-gateway";
pub const JWT_AUDIENCE: &str = "egress-proxy";
const JWT_SECRET: &str = "bench-gateway-shared-secret-0123456789abcdef";
/// The role case 9's token carries and its target allows.
pub const JWT_ROLE: &str = "bench";
/// Case 10's static AWS keys (never checked: the upstream only echoes the signature).
pub const AWS_ACCESS_KEY_ID: &str = "AKIDBENCHEXAMPLE";
const AWS_SECRET_ACCESS_KEY: &str = "bench/aws/secret/access/key/0123456789";

/// Files of the callers' PKI under one directory (see [`make_pki`]).
pub fn pki_file(pki: &Path, name: &str) -> String {
    pki.join(name).display().to_string()
}

/// `egress.callers` of case 8: the listener speaks TLS and demands a client certificate
/// verified against the mesh CA.
pub fn mtls_callers(pki: &Path) -> String {
    format!(
        "  callers:\n    mtls:\n      server_cert: \"{}\"\n      server_key: \"{}\"\n      \
         client_ca: \"{}\"\n      require_client_cert: true\n",
        pki_file(pki, "egress.crt"),
        pki_file(pki, "egress.key"),
        pki_file(pki, "mesh-ca.crt"),
    )
}

/// Case 11's listener TLS, as `egressctl compile` renders it for case 8's `callers.mtls`.
pub fn listener_tls(pki: &Path) -> serde_json::Value {
    serde_json::json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": true,
            "common_tls_context": {
                "tls_certificates": [{
                    "certificate_chain": { "filename": pki_file(pki, "egress.crt") },
                    "private_key": { "filename": pki_file(pki, "egress.key") }
                }],
                "validation_context": { "trusted_ca": { "filename": pki_file(pki, "mesh-ca.crt") } }
            }
        }
    })
}

/// `egress.callers` of case 9: one HS256 issuer (the token in `Authorization: Bearer`).
pub fn jwt_callers() -> String {
    format!(
        "  callers:\n    jwt:\n      - issuer: {JWT_ISSUER}\n        audiences: [{JWT_AUDIENCE}]\n        \
         algorithms: [HS256]\n        secret: \"{JWT_SECRET}\"\n"
    )
}

/// The `allow` block a target of case 8 or 9 gets (so the allow check runs, not only the
/// identity check).
pub fn allow_spiffe() -> String {
    format!("      allow:\n        spiffe_ids: [\"{SPIFFE_ID}\"]\n")
}

pub fn allow_role() -> String {
    format!("      allow:\n        roles: [{JWT_ROLE}]\n")
}

/// Case 10's target: S3-style SigV4 with static keys, payload unsigned.
pub fn sigv4_target(name: &str, url: &str) -> String {
    format!(
        "    {name}:\n      url: \"{url}\"\n      auth:\n        type: aws_sigv4\n        \
         region: us-east-1\n        service: s3\n        access_key_id: {AWS_ACCESS_KEY_ID}\n        \
         secret_access_key: \"{AWS_SECRET_ACCESS_KEY}\"\n        payload: unsigned\n"
    )
}

/// Whether the upstream's `Authorization` is a SigV4 signature with case 10's key.
pub fn is_sigv4(auth: &str) -> bool {
    auth.strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .is_some_and(|rest| rest.starts_with(AWS_ACCESS_KEY_ID) && rest.contains("Signature="))
}

/// The callers' PKI, made with openssl in `dir`: `mesh-ca`, the listener's `egress` server
/// certificate (127.0.0.1), and the load's `load` client certificate with [`SPIFFE_ID`].
pub fn make_pki(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let script = format!(
        r#"set -euo pipefail
ca() {{ openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $1.key -out $1.crt -days 2 -subj /CN=$1 \
       -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null; }}
leaf() {{
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $1.key -out $1.csr -subj /CN=$1 2>/dev/null
  printf "%b" "$3" > $1.ext
  openssl x509 -req -in $1.csr -CA $2.crt -CAkey $2.key -CAcreateserial -out $1.crt -days 2 -extfile $1.ext 2>/dev/null; }}
ca mesh-ca
leaf egress mesh-ca "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
leaf load mesh-ca "subjectAltName=URI:{SPIFFE_ID}\nextendedKeyUsage=clientAuth\n"
"#
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script).current_dir(dir);
    output(cmd).context("making the callers' PKI with openssl")?;
    Ok(())
}

/// `GET https://127.0.0.1:port/path` with the load's client certificate (curl), for the
/// sanity check of cases 8 and 11 (the harness's own client speaks no TLS).
pub fn tls_get(port: u16, path: &str, pki: &Path) -> Result<Response> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"]);
    cmd.arg("--cacert").arg(pki.join("mesh-ca.crt"));
    cmd.arg("--cert").arg(pki.join("load.crt"));
    cmd.arg("--key").arg(pki.join("load.key"));
    cmd.arg(format!("https://127.0.0.1:{port}{path}"));
    let out = output(cmd)?;
    let (body, status) = out
        .trim_end()
        .rsplit_once('\n')
        .ok_or_else(|| anyhow!("curl printed no status: {out:?}"))?;
    Ok(Response {
        status: status.trim().parse().context("curl's status")?,
        body: format!("{body}\n"),
    })
}

/// Builds `bench/wrk-client-cert/client_cert.c` into `out` (`cc -shared`): preloaded into wrk,
/// it gives wrk's TLS contexts the client certificate (see the file).
pub fn build_wrk_client_cert(repo: &Path, out: &Path) -> Result<()> {
    let cc = find_program("cc", &[]).ok_or_else(|| anyhow!("no C compiler (cc) on PATH"))?;
    let mut cmd = Command::new(cc);
    cmd.args(["-shared", "-fPIC", "-O2", "-o"]).arg(out);
    cmd.arg(repo.join("bench/wrk-client-cert/client_cert.c"));
    cmd.arg("-ldl");
    output(cmd).context("building bench/wrk-client-cert")?;
    Ok(())
}

/// The HS256 JWT every request of case 9 carries (valid for `valid_secs` from now, role
/// [`JWT_ROLE`]), signed by Python's hmac.
pub fn sign_jwt(valid_secs: u64) -> Result<String> {
    let python = find_program("python3", &[]).ok_or_else(|| anyhow!("no python3 on PATH"))?;
    let mut cmd = Command::new(python);
    cmd.arg("-c").arg(
        r#"import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
iss, aud, role, secret, valid = sys.argv[1:6]
now = int(time.time())
claims = {"iss": iss, "aud": aud, "sub": "bench-load", "roles": [role], "iat": now, "exp": now + int(valid)}
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
print(head + "." + b64(hmac.new(secret.encode(), head.encode(), hashlib.sha256).digest()))
"#,
    );
    cmd.args([JWT_ISSUER, JWT_AUDIENCE, JWT_ROLE, JWT_SECRET]);
    cmd.arg(valid_secs.to_string());
    let token = output(cmd).context("signing the bench JWT with python3")?;
    Ok(token.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use crate::cases::{egress_config, Case, Kind, Setup};
    use std::path::PathBuf;

    fn setup() -> Setup {
        Setup {
            egressctl: PathBuf::new(),
            filter_wasm: PathBuf::new(),
            floor_wasm: PathBuf::new(),
            upstream_port: 7001,
            token_port: 7002,
            pki: PathBuf::from("/tmp/pki"),
            jwt: "head.payload.sig".into(),
        }
    }

    fn case(kind: Kind) -> Case {
        Case::all()
            .into_iter()
            .find(|c| c.kind == kind)
            .expect("every kind has a case")
    }

    #[test]
    fn mtls_case_requires_client_certs_and_allows_only_the_load_spiffe_id() {
        let yaml = egress_config(Kind::OursMtlsCallers, &setup(), 7000);
        assert!(yaml.contains(
            "egress:\n  enabled: true\n  callers:\n    mtls:\n      server_cert: \"/tmp/pki/egress.crt\"\n"
        ));
        assert!(yaml.contains(
            "      client_ca: \"/tmp/pki/mesh-ca.crt\"\n      require_client_cert: true\n"
        ));
        assert!(yaml.contains(
            "        key: bench-api-key\n      allow:\n        spiffe_ids: [\"spiffe://bench.test/load\"]\n  routes:\n"
        ));
        assert!(!yaml.contains("jwt:"));
        let c = case(Kind::OursMtlsCallers);
        assert_eq!(c.id, 8);
        assert!(c.uses_client_cert());
        assert!(c.headers(&setup()).is_empty());
        assert!(c.upstream_saw_credential("/v1/items/42 key=bench-api-key auth=\n"));
    }

    #[test]
    fn jwt_case_sends_one_token_that_must_not_reach_the_upstream() {
        let yaml = egress_config(Kind::OursJwtCached, &setup(), 7000);
        assert!(yaml.contains(
            "  callers:\n    jwt:\n      - issuer: bench-gateway\n        audiences: [egress-proxy]\n        algorithms: [HS256]\n"
        ));
        assert!(yaml.contains("      allow:\n        roles: [bench]\n  routes:\n"));
        assert!(!yaml.contains("mtls:"));
        let c = case(Kind::OursJwtCached);
        assert_eq!(c.id, 9);
        assert!(!c.uses_client_cert());
        assert_eq!(
            c.headers(&setup()),
            vec!["Authorization: Bearer head.payload.sig".to_string()]
        );
        assert!(c.upstream_saw_credential("/v1/items/42 key=bench-api-key auth=\n"));
        // The caller's token forwarded would be a leak, not a pass.
        assert!(!c.upstream_saw_credential(
            "/v1/items/42 key=bench-api-key auth=Bearer head.payload.sig\n"
        ));
    }

    #[test]
    fn sigv4_case_signs_with_static_keys_and_no_api_key() {
        let yaml = egress_config(Kind::OursSigv4, &setup(), 7000);
        assert!(yaml.contains(
            "    api:\n      url: \"http://127.0.0.1:7001\"\n      auth:\n        type: aws_sigv4\n        region: us-east-1\n        service: s3\n"
        ));
        assert!(yaml.contains("        payload: unsigned\n"));
        assert!(!yaml.contains("callers:") && !yaml.contains("X-API-Key"));
        let c = case(Kind::OursSigv4);
        assert_eq!(c.id, 10);
        assert!(c.headers(&setup()).is_empty());
        let signed = "/v1/items/42 key= auth=AWS4-HMAC-SHA256 Credential=AKIDBENCHEXAMPLE/20261129/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=abc\n";
        assert!(c.upstream_saw_credential(signed));
        assert!(!c.upstream_saw_credential("/v1/items/42 key= auth=\n"));
        assert!(!c.upstream_saw_credential(
            "/v1/items/42 key= auth=AWS4-HMAC-SHA256 Credential=OTHER/x, Signature=abc\n"
        ));
    }

    #[test]
    fn tls_limit_case_is_case_1_with_the_mtls_listener() {
        let s = setup();
        let plain = crate::cases::native_bootstrap(Kind::Limit, &s, 7000, 7003);
        let tls = crate::cases::native_bootstrap(Kind::LimitMtls, &s, 7000, 7003);
        let chain = &tls["static_resources"]["listeners"][0]["filter_chains"][0];
        let ctx = &chain["transport_socket"]["typed_config"];
        assert_eq!(ctx["require_client_certificate"], true);
        assert_eq!(
            ctx["common_tls_context"]["validation_context"]["trusted_ca"]["filename"],
            "/tmp/pki/mesh-ca.crt"
        );
        let plain_chain = &plain["static_resources"]["listeners"][0]["filter_chains"][0];
        assert!(plain_chain.get("transport_socket").is_none());
        assert_eq!(chain["filters"], plain_chain["filters"]);
        let c = case(Kind::LimitMtls);
        assert_eq!(c.id, 11);
        assert!(c.uses_client_cert());
        assert!(c.upstream_saw_credential("/v1/items/42 key= auth=\n"));
    }

    #[test]
    fn the_api_key_case_gets_no_callers() {
        let yaml = egress_config(Kind::OursApiKey, &setup(), 7000);
        assert!(yaml.contains("egress:\n  enabled: true\n  targets:\n"));
        assert!(!yaml.contains("callers:") && !yaml.contains("allow:"));
    }
}
