//! The egress proxy end to end: `egressctl compile` of the demo config (the spec's seed config
//! pointed at local stand-ins), real Envoy 1.40 running the built `egress_filter.wasm`, real
//! TLS and mTLS upstreams. Each test starts its own stand-ins and Envoy on free loopback ports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anyhow::{bail, Context, Result};
use egress_e2e::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The seed's secrets, unique so any leak is easy to find.
const SECRETS: [(&str, &str); 7] = [
    ("SALESFORCE_CLIENT_ID", "e2e-sf-client"),
    ("SALESFORCE_CLIENT_SECRET", "SECRET-sf-client-secret"),
    ("NOTIFICATION_API_KEY", "SECRET-notify-key"),
    ("ANALYTICS_BEARER_TOKEN", "SECRET-analytics-token"),
    ("ERP_USERNAME", "erp-user"),
    ("ERP_PASSWORD", "SECRET-erp-password"),
    ("REDIS_PASSWORD", "SECRET-redis"),
];

fn demo_config() -> PathBuf {
    repo_root().join("examples/demo/config.yaml")
}

/// Stand-ins for the spec's services, Envoy with the compiled demo config, and where to reach them.
struct Proxy {
    standins: Vec<Standin>,
    envoy: Envoy,
    base: String,
    state: tempfile::TempDir,
    env: Vec<(String, String)>,
}

/// What to change in the demo setup.
#[derive(Default)]
struct Setup {
    /// Serve notification with a certificate from another CA.
    notification_wrong_ca: bool,
    /// Extra environment for the config (e.g. a different CA path).
    env: Vec<(String, String)>,
}

impl Proxy {
    fn start() -> Result<Self> {
        Self::start_with(Setup::default())
    }

    fn start_with(setup: Setup) -> Result<Self> {
        let pki = Pki::generate()?;
        let server = pki.server();
        let notify_cert = if setup.notification_wrong_ca {
            pki.other_server()
        } else {
            pki.server()
        };
        let standins = vec![
            Standin::start(
                StandinOpts::new("salesforce")
                    .tls(server.clone())
                    .status_for("POST", 201),
            )?,
            Standin::start(
                StandinOpts::new("salesforce-login")
                    .tls(server.clone())
                    .token_endpoint("/services/oauth2/token", 3600),
            )?,
            Standin::start(StandinOpts::new("notification").tls(notify_cert))?,
            Standin::start(
                StandinOpts::new("audit")
                    .tls(server.clone())
                    .client_ca(pki.client_ca_cert()),
            )?,
            Standin::start(StandinOpts::new("analytics").tls(server.clone()))?,
            Standin::start(StandinOpts::new("legacy-erp").tls(pki.self_signed()))?,
        ];
        let listen = free_port()?;
        let admin = free_port()?;
        let state = scratch_dir()?;
        let mut env: Vec<(String, String)> = SECRETS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (var, s) in [
            ("DEMO_SALESFORCE_PORT", &standins[0]),
            ("DEMO_SALESFORCE_LOGIN_PORT", &standins[1]),
            ("DEMO_NOTIFY_PORT", &standins[2]),
            ("DEMO_AUDIT_PORT", &standins[3]),
            ("DEMO_ANALYTICS_PORT", &standins[4]),
            ("DEMO_ERP_PORT", &standins[5]),
        ] {
            env.push((var.into(), s.port().to_string()));
        }
        env.push(("DEMO_LISTEN".into(), format!("127.0.0.1:{listen}")));
        env.push(("DEMO_PKI".into(), pki.dir().display().to_string()));
        env.push(("DEMO_STATE".into(), state.path().display().to_string()));
        env.extend(setup.env);

        let out = state.path().join("out");
        let compiled = ctl(
            &env,
            &[
                "compile",
                demo_config().to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--admin",
                &format!("127.0.0.1:{admin}"),
                "--wasm",
                filter_wasm().to_str().unwrap(),
            ],
        )?;
        if !compiled.status.success() {
            bail!(
                "egressctl compile failed: {}",
                String::from_utf8_lossy(&compiled.stderr)
            );
        }
        let envoy = Envoy::start(
            &out.join("envoy.yaml"),
            &["--file-flush-interval-msec", "100"],
        )?;
        envoy.wait_ready(&format!("127.0.0.1:{admin}"))?;
        Ok(Self {
            standins,
            envoy,
            base: format!("http://127.0.0.1:{listen}"),
            state,
            env,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn send(&self, method: &str, path: &str) -> Response {
        Request::new(method, &self.url(path)).send().unwrap()
    }

    /// Request lines of the access log, waiting until at least `n` are there.
    fn request_log(&self, n: usize) -> Vec<String> {
        let path = self.state.path().join("requests.log");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn ctl(env: &[(String, String)], args: &[&str]) -> Result<std::process::Output> {
    let mut cmd: Command = egressctl()?;
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd.output().context("running egressctl")
}

/// The upstream's echo of what it received.
fn echo(r: &Response) -> Value {
    assert!(
        r.status < 300,
        "expected a forwarded request, got {} {}",
        r.status,
        r.body.as_str()
    );
    r.json().unwrap()
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains("SECRET-"), "a secret leaked: {text}");
}

#[test]
fn every_row_of_the_spec_routing_table_lands_on_its_target_with_the_rewritten_path() {
    let p = Proxy::start().unwrap();
    // (incoming path, upstream service, path the upstream sees); CRM is OAuth2, tested below.
    let rows = [
        ("POST", "/egress/notify/email", "notification", "/email"),
        ("POST", "/egress/audit/events", "audit", "/events"),
        (
            "GET",
            "/egress/analytics/stats",
            "analytics",
            "/api/v2/stats",
        ),
        (
            "GET",
            "/egress/erp/customers",
            "legacy-erp",
            "/api/v1/customers",
        ),
        (
            "GET",
            "/egress/erp/customers/123",
            "legacy-erp",
            "/api/v1/customers/123",
        ),
    ];
    for (method, path, service, upstream_path) in rows {
        let e = echo(&p.send(method, path));
        assert_eq!(e["service"], service, "{path}");
        assert_eq!(e["path"], upstream_path, "{path}");
        assert_eq!(e["method"], method, "{path}");
    }
}

#[test]
fn query_string_is_kept_and_authority_is_the_targets() {
    let p = Proxy::start().unwrap();
    let e = echo(&p.send(
        "GET",
        "/egress/analytics/users/stats?from=2025-01-01&limit=10",
    ));
    assert_eq!(e["path"], "/api/v2/users/stats");
    assert_eq!(e["query"], "from=2025-01-01&limit=10");
    let port = p
        .env
        .iter()
        .find(|(k, _)| k == "DEMO_ANALYTICS_PORT")
        .unwrap()
        .1
        .clone();
    assert_eq!(e["headers"]["host"], format!("127.0.0.1:{port}"));
}

#[test]
fn section_3_credentials_arrive_api_key_bearer_basic_and_mtls() {
    let p = Proxy::start().unwrap();
    let notify = echo(
        &Request::post(&p.url("/egress/notify/email"))
            .header("content-type", "application/json")
            .body(r#"{"to":"user@example.com","subject":"Welcome!"}"#)
            .send()
            .unwrap(),
    );
    assert_eq!(notify["headers"]["x-api-key"], "SECRET-notify-key");
    assert_eq!(
        notify["body"],
        r#"{"to":"user@example.com","subject":"Welcome!"}"#
    );
    assert_eq!(notify["headers"]["content-type"], "application/json");

    let analytics = echo(&p.send("GET", "/egress/analytics/users/stats"));
    assert_eq!(
        analytics["headers"]["authorization"],
        "Bearer SECRET-analytics-token"
    );

    let erp = echo(&p.send("GET", "/egress/erp/customers/123"));
    // base64("erp-user:SECRET-erp-password")
    assert_eq!(
        erp["headers"]["authorization"],
        "Basic ZXJwLXVzZXI6U0VDUkVULWVycC1wYXNzd29yZA=="
    );

    let audit = echo(&p.send("POST", "/egress/audit/events"));
    assert_eq!(audit["client_cert"], CLIENT_CERT_CN);
    assert!(audit["headers"].get("authorization").is_none());
}

#[test]
fn callers_cannot_override_or_smuggle_credentials_or_routing_headers() {
    let p = Proxy::start().unwrap();
    let r = Request::post(&p.url("/egress/notify/email"))
        .header("authorization", "Bearer caller-token")
        .header("proxy-authorization", "Basic Y2FsbGVy")
        .header("x-api-key", "caller-key")
        .header("x-egress-target", "audit")
        .header("x-custom", "kept")
        .send()
        .unwrap();
    let e = echo(&r);
    assert_eq!(
        e["service"], "notification",
        "x-egress-target from the caller must not reroute"
    );
    let h = e["headers"].as_object().unwrap();
    assert_eq!(h["x-api-key"], "SECRET-notify-key");
    assert!(h.get("authorization").is_none());
    assert!(h.get("proxy-authorization").is_none());
    assert_eq!(h["x-custom"], "kept");
    for name in h.keys() {
        assert!(
            !name.starts_with("x-egress-"),
            "internal header {name} reached the target"
        );
        assert!(
            !name.starts_with("x-envoy-"),
            "Envoy header {name} reached the target"
        );
    }
}

#[test]
fn unknown_paths_get_404_json_and_wrong_methods_405_with_allow() {
    let p = Proxy::start().unwrap();
    for path in ["/egress/unknown/x", "/egress/crmx", "/", "/egress"] {
        let r = p.send("GET", path);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json().unwrap()["error"], "route_not_found", "{path}");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let r = p.send("GET", "/egress/notify/email");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert_eq!(r.json().unwrap()["error"], "method_not_allowed");
    let r = p.send("DELETE", "/egress/analytics/x");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST"));
}

#[test]
fn traversal_and_encoded_separators_are_refused_with_400_before_reaching_any_target() {
    let p = Proxy::start().unwrap();
    for path in [
        "/egress/erp/../notify/email",
        "/egress/erp/%2e%2e/%2e%2e/admin",
        "/egress/erp/.%2E/x",
        "/egress/erp/customers%2F..%2F..%2Fadmin",
        "/egress/erp/customers%5c..%5cadmin",
        "/egress/erp//customers",
        "/egress/erp/./customers",
    ] {
        let r = p.send("GET", path);
        assert_eq!(r.status, 400, "{path} got {} {}", r.status, r.body.as_str());
        assert_eq!(r.json().unwrap()["error"], "invalid_path", "{path}");
    }
    // Nothing reached the ERP.
    let stat = p
        .envoy
        .stat("cluster.egress_target_legacy-erp.upstream_rq_total")
        .unwrap();
    assert_eq!(stat.unwrap_or(0), 0);
}

#[test]
fn crm_requests_carry_a_token_the_filter_fetched_and_ready_turns_200() {
    let p = Proxy::start().unwrap();
    let e = echo(&p.send("POST", "/egress/crm/Contact"));
    assert_eq!(e["service"], "salesforce");
    assert_eq!(e["path"], "/services/data/v58.0/sobjects/Contact");
    // The stand-in token endpoint issues `<name>-token-<n>`: one fetch for both requests.
    assert_eq!(
        e["headers"]["authorization"],
        "Bearer salesforce-login-token-1"
    );
    let e = echo(&p.send("GET", "/egress/crm/Contact/003xx000004TmiQAAS"));
    assert_eq!(
        e["headers"]["authorization"],
        "Bearer salesforce-login-token-1"
    );
    assert_eq!(p.send("GET", "/ready").status, 200);
}

#[test]
fn oauth2_target_whose_token_endpoint_is_down_gets_503_credentials_unavailable() {
    let mut p = Proxy::start().unwrap();
    p.standins.remove(1).stop().unwrap(); // the token endpoint
    let started = Instant::now();
    let r = p.send("POST", "/egress/crm/Contact");
    assert_eq!(r.status, 503);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "waited {:?}",
        started.elapsed()
    );
    let body = r.json().unwrap();
    assert_eq!(body["error"], "credentials_unavailable");
    assert_eq!(body["target"], "salesforce");
    assert_no_secret(&r.body);
    let ready = p.send("GET", "/ready");
    assert_eq!(ready.status, 503);
    assert_eq!(
        ready.json().unwrap()["targets"],
        serde_json::json!(["salesforce"])
    );
    // While fetching keeps failing, the next request is refused at once.
    let started = Instant::now();
    assert_eq!(p.send("GET", "/egress/crm/Contact/1").status, 503);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "fail-fast took {:?}",
        started.elapsed()
    );
}

#[test]
fn health_is_200_json_and_metrics_count_requests_per_target_by_status_class() {
    let p = Proxy::start().unwrap();
    let h = p.send("GET", "/health");
    assert_eq!(h.status, 200);
    assert_eq!(h.json().unwrap()["status"], "ok");
    for _ in 0..3 {
        echo(&p.send("POST", "/egress/notify/email"));
    }
    echo(&p.send("GET", "/egress/erp/x"));
    let m = p.send("GET", "/metrics");
    assert_eq!(m.status, 200);
    let text = m.body.clone();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("envoy_cluster_upstream_rq_xx{")
                && l.contains("envoy_cluster_name=\"egress_target_notification\"")
                && l.contains("envoy_response_code_class=\"2\"")
        })
        .unwrap_or_else(|| panic!("no per-target 2xx count in /metrics"));
    assert!(line.ends_with(" 3"), "{line}");
    assert!(text.contains("envoy_cluster_name=\"egress_target_legacy-erp\""));
    assert_no_secret(&text);
}

#[test]
fn request_log_lines_follow_the_spec_format_and_hold_no_secret_or_query() {
    let p = Proxy::start().unwrap();
    echo(&p.send("POST", "/egress/notify/email?token=q-secret"));
    assert_eq!(p.send("GET", "/egress/nope").status, 404);
    let lines = p.request_log(2);
    assert!(lines.len() >= 2, "{lines:?}");
    let forwarded: Value = serde_json::from_str(&lines[0]).unwrap();
    let keys: Vec<&str> = forwarded
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    // serde_json's Map is sorted; check the order on the raw line instead.
    let order = [
        "\"level\"",
        "\"ts\"",
        "\"msg\"",
        "\"target\"",
        "\"method\"",
        "\"path\"",
        "\"target_url\"",
        "\"duration\"",
        "\"status\"",
    ];
    let positions: Vec<usize> = order.iter().map(|k| lines[0].find(k).unwrap()).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "key order: {}",
        lines[0]
    );
    assert_eq!(keys.len(), 9);
    assert_eq!(forwarded["level"], "info");
    assert_eq!(forwarded["msg"], "Egress request");
    assert_eq!(forwarded["target"], "notification");
    assert_eq!(forwarded["method"], "POST");
    assert_eq!(forwarded["path"], "/egress/notify/email");
    let port = p
        .env
        .iter()
        .find(|(k, _)| k == "DEMO_NOTIFY_PORT")
        .unwrap()
        .1
        .clone();
    assert_eq!(
        forwarded["target_url"],
        format!("https://127.0.0.1:{port}/email")
    );
    assert_eq!(forwarded["status"], 200);
    assert!(forwarded["duration"].as_str().unwrap().ends_with("ms"));
    assert!(forwarded["ts"].as_str().unwrap().ends_with('Z'));
    let refused: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(refused["status"], 404);
    assert_eq!(refused["target"], "-");
    let all = lines.join("\n");
    assert_no_secret(&all);
    assert!(!all.contains("q-secret"), "query strings are not logged");
}

#[test]
fn tls_is_verified_against_the_configured_ca_and_refused_on_mismatch() {
    let p = Proxy::start_with(Setup {
        notification_wrong_ca: true,
        ..Setup::default()
    })
    .unwrap();
    let r = p.send("POST", "/egress/notify/email");
    assert_eq!(
        r.status, 503,
        "a server whose CA we do not trust must not be reached"
    );
    assert!(
        p.envoy
            .stat("cluster.egress_target_notification.ssl.fail_verify_error")
            .unwrap()
            .unwrap_or(0)
            >= 1
    );
    // The ERP's self-signed certificate is accepted only because of insecure_skip_verify.
    echo(&p.send("GET", "/egress/erp/customers"));
}

#[test]
fn a_self_signed_target_is_refused_without_insecure_skip_verify() {
    let pki = Pki::generate().unwrap();
    // Point the ERP at a verified config: same demo, but the ERP's tls block verifies ca.crt.
    let state = scratch_dir().unwrap();
    let cfg = std::fs::read_to_string(demo_config()).unwrap().replace(
        "        insecure_skip_verify: true  # Self-signed cert",
        &format!(
            "        ca_cert: \"{}\"\n        server_name: erp.internal",
            pki.ca_cert().display()
        ),
    );
    let path = state.path().join("config.yaml");
    std::fs::write(&path, cfg).unwrap();
    let erp = Standin::start(StandinOpts::new("legacy-erp").tls(pki.self_signed())).unwrap();
    let (listen, admin) = (free_port().unwrap(), free_port().unwrap());
    let mut env: Vec<(String, String)> = SECRETS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.push(("DEMO_ERP_PORT".into(), erp.port().to_string()));
    env.push(("DEMO_LISTEN".into(), format!("127.0.0.1:{listen}")));
    env.push(("DEMO_PKI".into(), pki.dir().display().to_string()));
    env.push(("DEMO_STATE".into(), state.path().display().to_string()));
    let out = state.path().join("out");
    let o = ctl(
        &env,
        &[
            "compile",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "--wasm",
            filter_wasm().to_str().unwrap(),
        ],
    )
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let envoy = Envoy::start(&out.join("envoy.yaml"), &[]).unwrap();
    envoy.wait_ready(&format!("127.0.0.1:{admin}")).unwrap();
    let r = get(&format!("http://127.0.0.1:{listen}/egress/erp/customers")).unwrap();
    assert_eq!(r.status, 503);
}

#[test]
fn a_filter_config_the_filter_refuses_stops_the_plugin_with_a_clear_log_line() {
    let p = Proxy::start().unwrap();
    let out = p.state.path().join("out");
    let lds = std::fs::read_to_string(out.join("lds.yaml")).unwrap();
    // A version the filter does not know: the filter must refuse it at load.
    let broken = lds.replace(r#"{"version":1,"#, r#"{"version":99,"#);
    assert!(
        broken != lds,
        "the inline filter config was not found in lds.yaml"
    );
    let dir = scratch_dir().unwrap();
    // The request log lived in the first proxy's state directory, which goes with it.
    let broken = broken.replace(
        p.state.path().to_str().unwrap(),
        dir.path().to_str().unwrap(),
    );
    std::fs::write(dir.path().join("lds.yaml"), broken).unwrap();
    std::fs::copy(out.join("cds.yaml"), dir.path().join("cds.yaml")).unwrap();
    let bootstrap = std::fs::read_to_string(out.join("envoy.yaml"))
        .unwrap()
        .replace(out.to_str().unwrap(), dir.path().to_str().unwrap());
    let broken_path = dir.path().join("envoy.yaml");
    std::fs::write(&broken_path, bootstrap).unwrap();
    let base = p.base.clone();
    drop(p); // frees the listener and admin ports the broken config reuses
    let envoy = Envoy::start(&broken_path, &[]);
    // Envoy refuses to start a listener whose wasm plugin fails to configure.
    let log = match envoy {
        Ok(e) => {
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && !e.log().contains("config rejected") {
                std::thread::sleep(Duration::from_millis(100));
            }
            // If Envoy serves at all, nothing may be forwarded without the filter.
            if let Ok(r) = Request::post(&format!("{base}/egress/notify/email"))
                .timeout(Duration::from_secs(5))
                .send()
            {
                assert!(
                    r.status >= 500,
                    "forwarded without a working filter: {} {}",
                    r.status,
                    r.body
                );
                assert!(
                    !r.body.contains("\"service\""),
                    "reached an upstream: {}",
                    r.body
                );
            }
            e.log()
        }
        Err(err) => format!("{err:#}"),
    };
    assert!(log.contains("egress filter config rejected"), "{log}");
    assert!(log.contains("version 99"), "{log}");
    assert_no_secret(&log);
}

#[test]
fn egressctl_up_serves_and_stops_cleanly_on_sigterm() {
    let pki = Pki::generate().unwrap();
    let notify = Standin::start(StandinOpts::new("notification").tls(pki.server())).unwrap();
    let state = scratch_dir().unwrap();
    let (listen, admin) = (free_port().unwrap(), free_port().unwrap());
    let mut cmd = egressctl().unwrap();
    cmd.args([
        "up",
        demo_config().to_str().unwrap(),
        "--out",
        state.path().join("up").to_str().unwrap(),
        "--admin",
        &format!("127.0.0.1:{admin}"),
        "--wasm",
        filter_wasm().to_str().unwrap(),
        "--base-id",
        &(std::process::id() % 60_000 + 3_000).to_string(),
        "--concurrency",
        "1",
    ]);
    cmd.envs(SECRETS.iter().map(|(k, v)| (*k, *v)))
        .env("DEMO_NOTIFY_PORT", notify.port().to_string())
        .env("DEMO_LISTEN", format!("127.0.0.1:{listen}"))
        .env("DEMO_PKI", pki.dir())
        .env("DEMO_STATE", state.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let url = format!("http://127.0.0.1:{listen}/egress/notify/email");
    let deadline = Instant::now() + Duration::from_secs(30);
    let served = loop {
        if let Ok(r) = Request::post(&url).timeout(Duration::from_secs(2)).send() {
            break r;
        }
        assert!(Instant::now() < deadline, "egressctl up never served");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(echo(&served)["headers"]["x-api-key"], "SECRET-notify-key");
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "egressctl up did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "exit {status}: {err}");
    assert!(err.contains("Envoy stopped"), "{err}");
    assert_no_secret(&err);
    assert!(
        get(&format!("http://127.0.0.1:{listen}/health")).is_err(),
        "Envoy still serving after stop"
    );
}
