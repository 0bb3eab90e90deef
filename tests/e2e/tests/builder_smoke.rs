//! Proves the e2e builder itself works: PKI, stand-ins, Envoy with upstream
//! TLS and mTLS, the HTTP client. No egress filter involved.

use std::fs;
use std::path::Path;

use anyhow::Result;
use egress_e2e::*;
use serde_json::json;

/// A static bootstrap: `/a` goes to a plain-HTTP stand-in, `/b` to an
/// mTLS-requiring HTTPS stand-in with the client cert, `/c` to the same
/// mTLS stand-in without a client cert.
fn smoke_bootstrap(pki: &Pki, listen: u16, admin: u16, plain: u16, mtls: u16) -> String {
    let ca = pki.ca_cert();
    let client = pki.client();
    let tls = |with_client_cert: bool| {
        let client_cert = if with_client_cert {
            format!(
                r#"
          tls_certificates:
          - certificate_chain: {{ filename: "{}" }}
            private_key: {{ filename: "{}" }}"#,
                client.cert.display(),
                client.key.display()
            )
        } else {
            String::new()
        };
        format!(
            r#"
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: audit.secure.svc
        common_tls_context:{client_cert}
          validation_context:
            trusted_ca: {{ filename: "{}" }}
            match_typed_subject_alt_names:
            - san_type: DNS
              matcher: {{ exact: audit.secure.svc }}"#,
            ca.display()
        )
    };
    let cluster = |name: &str, port: u16, transport: &str| {
        format!(
            r#"
  - name: {name}
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {port} }}{transport}"#
        )
    };
    format!(
        r#"admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: {admin} }}
static_resources:
  listeners:
  - name: smoke
    address:
      socket_address: {{ address: 127.0.0.1, port_value: {listen} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: smoke
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: /a }}
                route: {{ cluster: plain }}
              - match: {{ prefix: /b }}
                route: {{ cluster: mtls, host_rewrite_literal: audit.secure.svc }}
              - match: {{ prefix: /c }}
                route: {{ cluster: mtls_without_client_cert, host_rewrite_literal: audit.secure.svc }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:{}{}{}
"#,
        cluster("plain", plain, ""),
        cluster("mtls", mtls, &tls(true)),
        cluster("mtls_without_client_cert", mtls, &tls(false)),
    )
}

/// A bootstrap with only an admin listener.
fn admin_only_bootstrap(admin: u16) -> String {
    format!(
        "admin:\n  address:\n    socket_address: {{ address: 127.0.0.1, port_value: {admin} }}\n"
    )
}

fn write(dir: &Path, name: &str, text: &str) -> Result<std::path::PathBuf> {
    let path = dir.join(name);
    fs::write(&path, text)?;
    Ok(path)
}

#[test]
fn envoy_routes_to_plain_and_mtls_standins_and_presents_the_client_cert() -> Result<()> {
    let pki = Pki::generate()?;
    let plain = Standin::start(StandinOpts::new("plain"))?;
    let audit = Standin::start(
        StandinOpts::new("audit")
            .tls(pki.server())
            .client_ca(pki.client_ca_cert()),
    )?;
    let (listen, admin) = (free_port()?, free_port()?);
    let scratch = scratch_dir()?;
    let bootstrap = write(
        scratch.path(),
        "envoy.yaml",
        &smoke_bootstrap(pki, listen, admin, plain.port(), audit.port()),
    )?;
    let envoy = Envoy::start(&bootstrap, &[])?;
    envoy.wait_ready(&format!("127.0.0.1:{admin}"))?;
    assert_eq!(envoy.admin_addr()?, format!("127.0.0.1:{admin}"));

    let resp = get(&format!("http://127.0.0.1:{listen}/a/hello?x=1"))?;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("x-standin"), Some("plain"));
    let echo = resp.json()?;
    assert_eq!(echo["service"], "plain");
    assert_eq!(echo["path"], "/a/hello");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["client_cert"], json!(null));

    let resp = Request::post(&format!("http://127.0.0.1:{listen}/b/events"))
        .json(&json!({"action": "create"}))
        .send()?;
    assert_eq!(resp.status, 200, "{resp:?}");
    let echo = resp.json()?;
    assert_eq!(echo["service"], "audit");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/b/events");
    assert_eq!(echo["headers"]["host"], "audit.secure.svc");
    assert_eq!(echo["headers"]["content-type"], "application/json");
    assert_eq!(echo["body"], r#"{"action":"create"}"#);
    assert_eq!(echo["client_cert"], CLIENT_CERT_CN);
    assert_eq!(envoy.stat("cluster.mtls.ssl.handshake")?, Some(1));

    // Without a client cert the mTLS stand-in refuses the connection.
    let resp = get(&format!("http://127.0.0.1:{listen}/c/events"))?;
    assert_eq!(resp.status, 503, "{resp:?}");
    assert!(
        envoy
            .stat("cluster.mtls_without_client_cert.ssl.connection_error")?
            .unwrap_or(0)
            >= 1,
        "{}",
        envoy
            .admin_get("/stats?filter=mtls_without_client_cert.ssl")?
            .body
    );
    Ok(())
}

#[test]
fn two_envoys_run_side_by_side_with_distinct_base_ids() -> Result<()> {
    let scratch = scratch_dir()?;
    let (admin1, admin2) = (free_port()?, free_port()?);
    let first = Envoy::start(
        &write(scratch.path(), "1.yaml", &admin_only_bootstrap(admin1))?,
        &[],
    )?;
    let second = Envoy::start(
        &write(scratch.path(), "2.yaml", &admin_only_bootstrap(admin2))?,
        &["--concurrency", "1"],
    )?;
    assert_ne!(first.base_id(), second.base_id());
    first.wait_ready(&format!("127.0.0.1:{admin1}"))?;
    second.wait_ready(&format!("127.0.0.1:{admin2}"))?;
    assert_eq!(first.admin_get("/ready")?.body.trim(), "LIVE");
    assert!(second.admin_get("/server_info")?.body.contains("1.40."));
    second.stop()?;
    assert_eq!(first.admin_get("/ready")?.status, 200);
    Ok(())
}

#[test]
fn envoy_that_fails_to_start_reports_its_log() -> Result<()> {
    let scratch = scratch_dir()?;
    let bootstrap = write(
        scratch.path(),
        "bad.yaml",
        "static_resources: {nonsense: 1}\n",
    )?;
    let envoy = Envoy::start(&bootstrap, &[])?;
    let err = envoy
        .wait_ready(&format!("127.0.0.1:{}", free_port()?))
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(err.contains("exited"), "{err}");
    assert!(err.contains("nonsense"), "{err}");
    Ok(())
}

#[test]
fn standin_echoes_the_request_and_applies_status_overrides() -> Result<()> {
    let standin = Standin::start(StandinOpts::new("crm").status_for("POST", 201))?;
    let resp = request(
        "POST",
        &standin.url("/sobjects/Contact?fields=Id"),
        &[("X-Api-Key", "k1"), ("content-type", "application/json")],
        Some(br#"{"FirstName":"John"}"#),
    )?;
    assert_eq!(resp.status, 201);
    let echo = resp.json()?;
    assert_eq!(
        echo,
        json!({
            "service": "crm",
            "method": "POST",
            "path": "/sobjects/Contact",
            "query": "fields=Id",
            "headers": echo["headers"].clone(),
            "body": r#"{"FirstName":"John"}"#,
            "client_cert": null,
        })
    );
    assert_eq!(echo["headers"]["x-api-key"], "k1");

    let resp = request("DELETE", &standin.url("/sobjects/Contact/1"), &[], None)?;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()?["method"], "DELETE");
    Ok(())
}

#[test]
fn standin_serves_oauth2_tokens_on_the_token_path() -> Result<()> {
    let login =
        Standin::start(StandinOpts::new("login").token_endpoint("/services/oauth2/token", 120))?;
    let token = |n: u32| -> Result<()> {
        let resp = Request::post(&login.url("/services/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&client_id=id&client_secret=secret")
            .send()?;
        let body = resp.json()?;
        assert_eq!(body["access_token"], format!("login-token-{n}"));
        assert_eq!(body["expires_in"], 120);
        assert_eq!(body["token_type"], "Bearer");
        assert!(body["request"]["body"]
            .as_str()
            .unwrap_or_default()
            .contains("client_secret=secret"));
        Ok(())
    };
    token(1)?;
    token(2)?;
    // Other paths still echo.
    assert_eq!(get(&login.url("/other"))?.json()?["path"], "/other");
    Ok(())
}

#[test]
fn pki_is_generated_once_with_every_file() -> Result<()> {
    let pki = Pki::generate()?;
    assert!(std::ptr::eq(pki, Pki::generate()?));
    for file in [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
        "other-ca.crt",
        "other-server.crt",
        "other-server.key",
        "client-ca.crt",
        "client.crt",
        "client.key",
        "self-signed.crt",
        "self-signed.key",
    ] {
        assert!(
            pki.path(file).is_file(),
            "{file} missing in {:?}",
            pki.dir()
        );
    }
    Ok(())
}

#[test]
fn egressctl_helper_runs_the_freshly_built_binary() -> Result<()> {
    let out = egressctl()?.arg("--help").output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("egressctl"));
    Ok(())
}
