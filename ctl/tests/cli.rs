//! `egressctl` as a user runs it: exit codes, messages, and the files `compile` writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

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
        "out/lds.json",
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
        Path::new(lds).is_absolute() && lds.ends_with("out/lds.json"),
        "{lds}"
    );
    assert!(cds.ends_with("out/cds.yaml"), "{cds}");
    // JSON, named .json: Envoy picks its (much faster) JSON parser by the extension.
    let l: Value =
        serde_json::from_str(&std::fs::read_to_string(ctl.path("out/lds.json")).unwrap()).unwrap();
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
fn compile_over_a_directory_an_older_egressctl_wrote_removes_its_lds_yaml() {
    let ctl = Ctl::seed();
    std::fs::create_dir_all(ctl.path("out")).unwrap();
    std::fs::write(ctl.path("out/lds.yaml"), "resources: []\n").unwrap();
    ctl.compile(&[]);
    assert!(!ctl.path("out/lds.yaml").exists());
    assert!(ctl.path("out/lds.json").exists());
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
    let lds = std::fs::read_to_string(ctl.path("out/lds.json")).unwrap();
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
    let out = ctl.run(&COMPILE);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.contains("target crm: auth.private_key") && err.contains("ES256"),
        "{err}"
    );
    assert_no_secret(&err);
    assert!(!ctl.path("out/filter.json").exists());
}
