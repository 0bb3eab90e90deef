//! `egressctl` as a user runs it: exit codes, messages, and the files `compile` writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SEED: &str = include_str!("../../examples/config.yaml");

/// The seed's environment; every value is unique so a leak is easy to spot.
const ENV: [(&str, &str); 7] = [
    ("REDIS_PASSWORD", "SECRET-redis-pw"),
    ("SALESFORCE_CLIENT_ID", "sf-client-id"),
    ("SALESFORCE_CLIENT_SECRET", "SECRET-sf-secret"),
    ("NOTIFICATION_API_KEY", "SECRET-notify-key"),
    ("ANALYTICS_BEARER_TOKEN", "SECRET-analytics-token"),
    ("ERP_USERNAME", "erp-user"),
    ("ERP_PASSWORD", "SECRET-erp-pass"),
];

/// A scratch directory with a config in it, and a way to run egressctl there.
struct Ctl {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Ctl {
    fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.yaml"), config).unwrap();
        std::fs::write(dir.path().join("fake.wasm"), b"\0asm").unwrap();
        std::fs::write(dir.path().join("system-ca.pem"), b"ca").unwrap();
        Self {
            dir,
            env: ENV
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn seed() -> Self {
        Self::new(SEED)
    }

    fn without_env(mut self, name: &str) -> Self {
        self.env.retain(|(k, _)| k != name);
        self
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_egressctl"));
        cmd.current_dir(self.dir.path()).args(args);
        for (k, _) in ENV {
            cmd.env_remove(k);
        }
        cmd.env_remove("ENVOY_BIN").env_remove("EGRESS_FILTER_WASM");
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.output().unwrap()
    }

    fn compile(&self, extra: &[&str]) -> (Output, Value) {
        let mut args = vec![
            "compile",
            "config.yaml",
            "--out",
            "out",
            "--wasm",
            "fake.wasm",
            "--system-ca",
            "system-ca.pem",
        ];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        (out, self.rendered())
    }

    /// The bootstrap with the listeners and clusters of the xDS files folded in, as Envoy
    /// sees it once it has loaded them.
    fn rendered(&self) -> Value {
        let read = |f: &str| -> Value {
            serde_yaml::from_str(&std::fs::read_to_string(self.path(f)).unwrap()).unwrap()
        };
        let mut b = read("out/envoy.yaml");
        let listeners = read("out/lds.yaml")["resources"].clone();
        let clusters = read("out/cds.yaml")["resources"].clone();
        b["static_resources"] = serde_json::json!({ "listeners": listeners, "clusters": clusters });
        b
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains("SECRET-"), "a secret leaked:\n{text}");
}

fn cluster<'a>(bootstrap: &'a Value, name: &str) -> &'a Value {
    bootstrap["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

fn routes(bootstrap: &Value) -> &Vec<Value> {
    bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["route_config"]["virtual_hosts"][0]["routes"]
        .as_array()
        .unwrap()
}

#[test]
fn validate_accepts_the_seed_config_and_exits_0() {
    let ctl = Ctl::seed();
    let out = ctl.run(&["validate", "config.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("5 targets, 5 routes"));
    assert_no_secret(&stdout(&out));
}

#[test]
fn validate_prints_every_error_with_file_line_column_and_exits_1() {
    let bad = SEED
        .replace("      target: audit\n", "      target: audti\n")
        .replace(
            "methods: [\"POST\"]\n\n    # Audit",
            "methods: [\"POTS\"]\n\n    # Audit",
        )
        .replace("  read_timeout: 30s", "  read_timeout: 30s\n  colour: blue");
    let ctl = Ctl::new(&bad);
    let out = ctl.run(&["validate", "config.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("config.yaml:7:3: http.colour: unknown field `colour`"),
        "{err}"
    );
    assert!(
        err.contains("egress.routes[2].target: unknown target \"audti\""),
        "{err}"
    );
    assert!(
        err.contains("egress.routes[1].methods[0]: invalid method \"POTS\""),
        "{err}"
    );
    assert!(err.contains("3 error(s)"), "{err}");
    assert_no_secret(&err);
}

#[test]
fn a_missing_environment_variable_is_named_with_its_field() {
    let ctl = Ctl::seed().without_env("NOTIFICATION_API_KEY");
    let out = ctl.run(&["validate", "config.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("egress.targets.notification.auth.key: environment variable NOTIFICATION_API_KEY is not set"),
        "{err}"
    );
}

#[test]
fn a_missing_config_file_is_an_error_exit_1() {
    let ctl = Ctl::seed();
    let out = ctl.run(&["validate", "nope.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot read nope.yaml"));
}

#[test]
fn compile_writes_private_envoy_yaml_and_filter_json() {
    let ctl = Ctl::seed();
    let (out, _) = ctl.compile(&[]);
    assert_no_secret(&stdout(&out));
    for f in [
        "out/envoy.yaml",
        "out/lds.yaml",
        "out/cds.yaml",
        "out/filter.json",
        "out/state.json",
    ] {
        let meta = std::fs::metadata(ctl.path(f)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{f}");
        }
        assert!(meta.len() > 0);
    }
    let filter: egress_core::plan::FilterConfig =
        serde_json::from_slice(&std::fs::read(ctl.path("out/filter.json")).unwrap()).unwrap();
    assert_eq!(filter.targets.len(), 5);
    assert_eq!(filter.routes.len(), 5);
    // The seed's audit certs do not exist here: compile warns, naming them.
    assert!(stderr(&out).contains("/etc/certs/audit-client.crt does not exist"));
}

#[test]
fn compile_renders_listener_admin_and_the_filter_config_inline() {
    let ctl = Ctl::seed();
    let (_, b) = ctl.compile(&["--admin", "127.0.0.1:19999"]);
    let l = &b["static_resources"]["listeners"][0];
    assert_eq!(l["address"]["socket_address"]["address"], "0.0.0.0");
    assert_eq!(l["address"]["socket_address"]["port_value"], 8080);
    assert_eq!(
        b["admin"]["address"]["socket_address"]["address"],
        "127.0.0.1"
    );
    assert_eq!(b["admin"]["address"]["socket_address"]["port_value"], 19999);
    let hcm = &l["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(hcm["request_timeout"], "30s");
    let wasm = &hcm["http_filters"][0]["typed_config"]["config"];
    assert_eq!(wasm["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
    assert!(wasm["vm_config"]["code"]["local"]["filename"]
        .as_str()
        .unwrap()
        .ends_with("fake.wasm"));
    let inline: egress_core::plan::FilterConfig =
        serde_json::from_str(wasm["configuration"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(inline.routes[0].path_prefix, "/egress/crm");
}

#[test]
fn the_bootstrap_loads_listeners_and_clusters_from_watched_files() {
    let ctl = Ctl::seed();
    ctl.compile(&[]);
    let b: Value =
        serde_yaml::from_str(&std::fs::read_to_string(ctl.path("out/envoy.yaml")).unwrap())
            .unwrap();
    assert!(b.get("static_resources").is_none());
    let lds = b["dynamic_resources"]["lds_config"]["path_config_source"]["path"]
        .as_str()
        .unwrap();
    let cds = b["dynamic_resources"]["cds_config"]["path_config_source"]["path"]
        .as_str()
        .unwrap();
    assert!(
        Path::new(lds).is_absolute() && lds.ends_with("out/lds.yaml"),
        "{lds}"
    );
    assert!(cds.ends_with("out/cds.yaml"), "{cds}");
    let l: Value =
        serde_yaml::from_str(&std::fs::read_to_string(ctl.path("out/lds.yaml")).unwrap()).unwrap();
    assert_eq!(
        l["resources"][0]["@type"],
        "type.googleapis.com/envoy.config.listener.v3.Listener"
    );
    let state: Value =
        serde_json::from_slice(&std::fs::read(ctl.path("out/state.json")).unwrap()).unwrap();
    assert_eq!(state["admin"], "127.0.0.1:9901");
    assert!(state["config"].as_str().unwrap().ends_with("config.yaml"));
}

#[test]
fn admin_defaults_to_loopback() {
    let ctl = Ctl::seed();
    let (_, b) = ctl.compile(&[]);
    assert_eq!(
        b["admin"]["address"]["socket_address"]["address"],
        "127.0.0.1"
    );
    assert_eq!(b["admin"]["address"]["socket_address"]["port_value"], 9901);
}

#[test]
fn clusters_verify_tls_skip_only_when_asked_and_present_client_certs_for_mtls() {
    let ctl = Ctl::seed();
    let (_, b) = ctl.compile(&[]);
    // analytics: https URL, no tls block: verified against the system bundle, SNI set.
    let a = &cluster(&b, "egress_target_analytics")["transport_socket"]["typed_config"];
    assert_eq!(a["sni"], "analytics.example.com");
    let v = &a["common_tls_context"]["validation_context"];
    assert!(v["trusted_ca"]["filename"]
        .as_str()
        .unwrap()
        .ends_with("system-ca.pem"));
    assert_eq!(
        v["match_typed_subject_alt_names"][0]["matcher"]["exact"],
        "analytics.example.com"
    );
    assert_eq!(cluster(&b, "egress_target_analytics")["type"], "STRICT_DNS");
    // legacy-erp: insecure_skip_verify -> no validation context at all.
    let erp = &cluster(&b, "egress_target_legacy-erp");
    assert!(
        erp["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"]
            .is_null()
    );
    assert_eq!(
        erp["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"]["port_value"],
        8443
    );
    // audit: mTLS client cert and its own CA.
    let audit = &cluster(&b, "egress_target_audit")["transport_socket"]["typed_config"]
        ["common_tls_context"];
    assert_eq!(
        audit["tls_certificates"][0]["certificate_chain"]["filename"],
        "/etc/certs/audit-client.crt"
    );
    assert_eq!(
        audit["tls_certificates"][0]["private_key"]["filename"],
        "/etc/certs/audit-client.key"
    );
    assert_eq!(
        audit["validation_context"]["trusted_ca"]["filename"],
        "/etc/certs/audit-ca.crt"
    );
    // salesforce: a token-endpoint cluster for the filter's callouts.
    let token = &cluster(&b, "egress_token_salesforce");
    assert_eq!(
        token["transport_socket"]["typed_config"]["sni"],
        "login.salesforce.com"
    );
}

/// The route Envoy picks for a request (the first whose path and header matchers all match;
/// exact and presence header matchers, `prefix` and `path` path matchers), or `None`.
fn route_for<'a>(routes: &'a [Value], path: &str, headers: &[(&str, &str)]) -> Option<&'a Value> {
    routes.iter().find(|r| {
        let m = &r["match"];
        let path_ok = match (m["prefix"].as_str(), m["path"].as_str()) {
            (Some(prefix), _) => path.starts_with(prefix),
            (None, Some(exact)) => path == exact,
            (None, None) => false,
        };
        let headers_ok = m["headers"].as_array().is_none_or(|hs| {
            hs.iter().all(|h| {
                let value = headers
                    .iter()
                    .find(|(n, _)| h["name"] == *n)
                    .map(|(_, v)| *v);
                match (value, h["string_match"]["exact"].as_str()) {
                    (Some(v), Some(want)) => v == want,
                    (Some(_), None) => h["present_match"] == true,
                    (None, _) => false,
                }
            })
        });
        path_ok && headers_ok
    })
}

/// Retry conditions under which the request cannot have reached the upstream.
const SAFE_RETRY_ON: [&str; 4] = [
    "connect-failure",
    "refused-stream",
    "reset-before-request",
    "http3-post-connect-failure",
];

/// What Envoy does with a `method` request to target `target` whose upstream read it and then
/// reset the connection (or answered 503): how many times it sends it again.
fn replays_after_reset(routes: &[Value], target: &str, method: &str) -> u64 {
    let Some(route) = route_for(
        routes,
        "/services/x",
        &[("x-egress-target", target), (":method", method)],
    ) else {
        return 0;
    };
    let policy = &route["route"]["retry_policy"];
    let on = policy["retry_on"].as_str().unwrap_or("");
    let unsafe_on = on
        .split(',')
        .any(|c| !c.is_empty() && !SAFE_RETRY_ON.contains(&c.trim()));
    let method_allowed = policy["retriable_request_headers"]
        .as_array()
        .is_none_or(|hs| {
            hs.iter().any(|h| {
                h["name"] == ":method" && h["string_match"]["exact"].as_str() == Some(method)
            })
        });
    if unsafe_on && method_allowed {
        policy["num_retries"].as_u64().unwrap_or(1)
    } else {
        0
    }
}

/// Whether a request that never reached the upstream (connection refused) is retried.
fn retried_on_connect_failure(routes: &[Value], target: &str, method: &str) -> bool {
    route_for(
        routes,
        "/services/x",
        &[("x-egress-target", target), (":method", method)],
    )
    .is_some_and(|r| {
        r["route"]["retry_policy"]["retry_on"]
            .as_str()
            .unwrap_or("")
            .split(',')
            .any(|c| c == "connect-failure")
    })
}

#[test]
fn retries_never_replay_post_or_patch_after_the_request_may_have_been_sent() {
    let ctl = Ctl::seed();
    let (_, b) = ctl.compile(&[]);
    let rs = routes(&b);
    for target in ["salesforce", "notification", "analytics"] {
        // Not idempotent (RFC 9110 9.2.2): never sent again once the upstream may have it.
        for method in ["POST", "PATCH", "LOCK", "CONNECT"] {
            assert_eq!(
                replays_after_reset(rs, target, method),
                0,
                "{target}: {method} replayed after a reset"
            );
        }
        // Idempotent: retried `retry_count` (3) times.
        for method in ["GET", "HEAD", "PUT", "DELETE"] {
            assert_eq!(
                replays_after_reset(rs, target, method),
                3,
                "{target}: {method} after a reset"
            );
        }
        // Every method is retried when the request cannot have been sent.
        for method in ["POST", "PATCH", "GET"] {
            assert!(
                retried_on_connect_failure(rs, target, method),
                "{target}: {method} not retried on connect failure"
            );
        }
    }
    // The back-off is `retry_delay`, the route timeout the target's `timeout`.
    let get = route_for(
        rs,
        "/x",
        &[("x-egress-target", "salesforce"), (":method", "GET")],
    )
    .unwrap();
    assert_eq!(
        get["route"]["retry_policy"]["retry_back_off"]["base_interval"],
        "1s"
    );
    assert_eq!(get["route"]["timeout"], "15s");
    assert!(
        !rs.iter().any(|r| r.to_string().contains("safe_regex")),
        "no regex per request"
    );
}

#[test]
fn retry_count_zero_renders_no_replay_for_any_method() {
    let cfg = SEED.replace("    retry_count: 3", "    retry_count: 0");
    assert_ne!(cfg, SEED, "the seed's retry_count was not found");
    let ctl = Ctl::new(&cfg);
    let (_, b) = ctl.compile(&[]);
    let rs = routes(&b);
    for method in ["GET", "PUT", "POST"] {
        assert_eq!(replays_after_reset(rs, "analytics", method), 0, "{method}");
    }
}

#[test]
fn relative_cert_paths_resolve_against_the_config_folder() {
    let cfg = "http:\n  addr: \"127.0.0.1:18080\"\negress:\n  targets:\n    t:\n      url: https://x.example.com\n      auth: {type: mtls}\n      tls: {client_cert: certs/c.crt, client_key: certs/c.key, ca_cert: certs/ca.crt}\n  routes:\n    - {path_prefix: /egress/t, target: t}\n";
    let ctl = Ctl::new(cfg);
    let (_, b) = ctl.compile(&[]);
    let ctx =
        &cluster(&b, "egress_target_t")["transport_socket"]["typed_config"]["common_tls_context"];
    let ca = ctx["validation_context"]["trusted_ca"]["filename"]
        .as_str()
        .unwrap();
    assert!(
        Path::new(ca).is_absolute() && ca.ends_with("certs/ca.crt"),
        "{ca}"
    );
}

#[test]
fn routes_prints_the_spec_routing_table() {
    let ctl = Ctl::seed();
    let out = ctl.run(&["routes", "config.yaml", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let find = |p: &str| rows.iter().find(|r| r["path_prefix"] == p).unwrap().clone();
    assert_eq!(
        find("/egress/crm")["outgoing_url"],
        "https://mycompany.salesforce.com/services/data/v58.0/sobjects"
    );
    assert_eq!(
        find("/egress/notify")["outgoing_url"],
        "https://notify.internal.svc/"
    );
    assert_eq!(
        find("/egress/erp")["outgoing_url"],
        "https://erp.internal:8443/api/v1"
    );
    assert_eq!(find("/egress/erp")["methods"], serde_json::json!(["*"]));
    assert_eq!(find("/egress/audit")["auth"], "mtls");
    let table = ctl.run(&["routes", "config.yaml"]);
    let text = stdout(&table);
    assert!(text.starts_with("INCOMING PREFIX"));
    assert!(
        text.contains("/egress/analytics  analytics     https://analytics.example.com/api/v2/..."),
        "{text}"
    );
    assert_no_secret(&text);
}

#[test]
fn explain_shows_the_outgoing_request_with_the_credential_redacted() {
    let ctl = Ctl::seed();
    let out = ctl.run(&[
        "explain",
        "config.yaml",
        "GET",
        "/egress/analytics/users/stats?x=1",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains("GET https://analytics.example.com/api/v2/users/stats"),
        "{text}"
    );
    assert!(
        text.contains("bearer (authorization: <redacted>)"),
        "{text}"
    );
    assert_no_secret(&text);

    let out = ctl.run(&[
        "explain",
        "config.yaml",
        "POST",
        "/egress/notify/email",
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "forward");
    assert_eq!(v["credential_header"], "x-api-key");
    assert_eq!(v["outgoing_url"], "https://notify.internal.svc/email");
    assert_no_secret(&stdout(&out));
}

#[test]
fn explain_says_why_a_request_is_refused() {
    let ctl = Ctl::seed();
    for (method, path, status) in [
        ("GET", "/egress/notify/email", 405),
        ("GET", "/egress/nowhere", 404),
        ("GET", "/egress/crm/%2e%2e/x", 400),
    ] {
        let out = ctl.run(&["explain", "config.yaml", method, path, "--format", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["outcome"], "reply", "{path}");
        assert_eq!(v["status"], status, "{path}");
    }
}

#[test]
fn every_command_has_help_with_an_example() {
    let ctl = Ctl::seed();
    for cmd in [
        &["validate"][..],
        &["compile"],
        &["routes"],
        &["explain"],
        &["apply"],
        &["up"],
        &["token", "refresh"],
        &["status"],
    ] {
        let out = ctl.run(&[cmd, &["--help"]].concat());
        let cmd = cmd.join(" ");
        assert_eq!(out.status.code(), Some(0), "{cmd}");
        assert!(
            stdout(&out).contains("Example"),
            "{cmd} --help has no example"
        );
    }
    let out = ctl.run(&["--help"]);
    assert!(stdout(&out).contains("Exit codes"));
}

#[test]
fn bad_usage_exits_2() {
    let ctl = Ctl::seed();
    assert_eq!(ctl.run(&["compile", "config.yaml"]).status.code(), Some(2));
    assert_eq!(ctl.run(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn up_without_envoy_says_how_to_install_it() {
    let ctl = Ctl::seed();
    let out = ctl.run(&[
        "up",
        "config.yaml",
        "--envoy",
        "/nonexistent/envoy",
        "--wasm",
        "fake.wasm",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(err.contains("/nonexistent/envoy does not exist"), "{err}");
}

const PKJWT: &str = "http:\n  addr: \"127.0.0.1:18080\"\negress:\n  targets:\n    crm:\n      url: https://crm.example.com\n      auth:\n        type: oauth2_client_credentials\n        token_url: https://login.example.com/token\n        client_id: c1\n        client_auth: private_key_jwt\n        private_key: keys/client.pem\n        signing_alg: ES256\n        key_id: k1\n  routes:\n    - {path_prefix: /egress/crm, target: crm}\n";

#[test]
fn compile_passes_the_private_key_jwt_key_through_secrets_env_not_the_filter_config() {
    let ctl = Ctl::new(PKJWT);
    std::fs::create_dir_all(ctl.path("keys")).unwrap();
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(ctl.path("keys/client.pem"))
        .output()
        .unwrap();
    assert!(out.status.success());
    ctl.compile(&[]);
    let filter: egress_core::plan::FilterConfig =
        serde_json::from_slice(&std::fs::read(ctl.path("out/filter.json")).unwrap()).unwrap();
    let egress_core::plan::Credential::Oauth2(cred) = &filter.targets[0].credential else {
        panic!("crm is oauth2");
    };
    let reference = cred
        .private_key_pem
        .as_ref()
        .unwrap()
        .as_reference()
        .unwrap();
    assert_eq!(reference.env, "EGRESS_SECRET_CRM__PRIVATE_KEY");
    assert!(reference.base64 && reference.sealed.is_some());
    assert_eq!(cred.key_id.as_deref(), Some("k1"));
    let pem = std::fs::read_to_string(ctl.path("keys/client.pem")).unwrap();
    let secrets = std::fs::read_to_string(ctl.path("out/secrets.env")).unwrap();
    let line = secrets
        .lines()
        .find(|l| l.starts_with("EGRESS_SECRET_CRM__PRIVATE_KEY="))
        .unwrap();
    assert!(!line.contains("PRIVATE KEY"), "base64 on one line");
    let lds = std::fs::read_to_string(ctl.path("out/lds.yaml")).unwrap();
    let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!lds.contains("PRIVATE KEY") && body.iter().all(|l| !lds.contains(l)));
}

#[test]
fn compile_refuses_a_private_key_that_does_not_parse_for_its_algorithm() {
    let ctl = Ctl::new(PKJWT);
    std::fs::create_dir_all(ctl.path("keys")).unwrap();
    std::fs::write(
        ctl.path("keys/client.pem"),
        "-----BEGIN PRIVATE KEY-----\nSECRET-not-a-key\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = ctl.run(&[
        "compile",
        "config.yaml",
        "--out",
        "out",
        "--wasm",
        "fake.wasm",
        "--system-ca",
        "system-ca.pem",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.contains("target crm: auth.private_key") && err.contains("ES256"),
        "{err}"
    );
    assert_no_secret(&err);
    assert!(!ctl.path("out/filter.json").exists());
}
