//! `egressctl validate` on configs that used to pass or hide errors: exit code 1, and every
//! error as `file:line:col: path: message`, one line each, no secret.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

const SEED: &str = include_str!("../../examples/config.yaml");

const ENV: [(&str, &str); 7] = [
    ("REDIS_PASSWORD", "SECRET-redis-pw"),
    ("SALESFORCE_CLIENT_ID", "sf-client-id"),
    ("SALESFORCE_CLIENT_SECRET", "SECRET-sf-secret"),
    ("NOTIFICATION_API_KEY", "SECRET-notify-key"),
    ("ANALYTICS_BEARER_TOKEN", "SECRET-analytics-token"),
    ("ERP_USERNAME", "erp-user"),
    ("ERP_PASSWORD", "SECRET-erp-pass"),
];

/// Writes `config` (bytes) as config.yaml in a fresh folder and validates it there.
fn validate(config: &[u8], env: &[(&str, &str)], setup: impl Fn(&std::path::Path)) -> Output {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), config).unwrap();
    setup(dir.path());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_egressctl"));
    cmd.current_dir(dir.path())
        .args(["validate", "config.yaml"]);
    for (k, _) in ENV {
        cmd.env_remove(k);
    }
    for (k, v) in ENV.iter().chain(env) {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The `file:line:col: path: message` lines of a failed validate.
fn error_lines(o: &Output) -> Vec<String> {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("SECRET-"), "a secret leaked:\n{err}");
    err.lines()
        .filter(|l| l.starts_with("config.yaml:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_trailing_newline_in_a_secret_variable_fails_validate_with_its_field() {
    let o = validate(
        SEED.as_bytes(),
        &[("ERP_PASSWORD", "SECRET-erp-pass\n")],
        |_| {},
    );
    let lines = error_lines(&o);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("config.yaml:85:9: egress.targets.legacy-erp.auth.password: contains a line feed (U+000A) at the end"),
        "{lines:?}"
    );
    let o = validate(
        SEED.as_bytes(),
        &[("NOTIFICATION_API_KEY", "SECRET-\r\nx")],
        |_| {},
    );
    let lines = error_lines(&o);
    assert!(
        lines[0].contains("egress.targets.notification.auth.key: contains a carriage return"),
        "{lines:?}"
    );
}

#[test]
fn a_bad_path_prefix_is_reported_with_the_routes_other_errors() {
    let cfg = SEED.replace(
        "    - path_prefix: \"/egress/notify\"\n      target: notification\n      strip_prefix: \"/egress/notify\"\n      methods: [\"POST\"]",
        "    - path_prefix: \"egress/notify\"\n      target: notifcation\n      strip_prefix: \"/egress/notify\"\n      methods: [\"POST\", \"SEND\"]",
    );
    assert_ne!(cfg, SEED);
    let lines = error_lines(&validate(cfg.as_bytes(), &[], |_| {}));
    let text = lines.join("\n");
    assert!(
        text.contains("egress.routes[1].path_prefix: \"egress/notify\" must start with '/'"),
        "{text}"
    );
    assert!(
        text.contains("egress.routes[1].target: unknown target \"notifcation\""),
        "{text}"
    );
    assert!(
        text.contains("egress.routes[1].methods[1]: invalid method \"SEND\""),
        "{text}"
    );
    assert_eq!(lines.len(), 3, "{text}");
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let mut bytes = "\u{feff}".as_bytes().to_vec();
    bytes.extend_from_slice(SEED.as_bytes());
    let o = validate(&bytes, &[], |_| {});
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn a_file_that_is_not_utf8_is_a_config_error() {
    let mut bytes = SEED.as_bytes().to_vec();
    bytes.insert(SEED.find("egress:").unwrap(), 0xfe);
    let lines = error_lines(&validate(&bytes, &[], |_| {}));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("config.yaml:12:1: the file is not valid UTF-8"),
        "{lines:?}"
    );
}

#[test]
fn a_ca_cert_naming_a_folder_beside_the_config_is_an_error() {
    let cfg = SEED.replace("ca_cert: \"/etc/certs/audit-ca.crt\"", "ca_cert: \"certs\"");
    let o = validate(cfg.as_bytes(), &[], |dir| {
        std::fs::create_dir(dir.join("certs")).unwrap()
    });
    let lines = error_lines(&o);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("config.yaml:68:9: egress.targets.audit.tls.ca_cert: "),
        "{lines:?}"
    );
    assert!(lines[0].contains("is a folder"), "{lines:?}");
}

#[test]
fn tls_on_an_http_url_and_a_bad_server_name_fail_validate() {
    let cfg = SEED
        .replace(
            "url: \"https://notify.internal.svc\"",
            "url: \"http://notify.internal.svc\"",
        )
        .replace(
            "        insecure_skip_verify: true  # Self-signed cert",
            "        insecure_skip_verify: true\n        server_name: \"erp internal\"",
        );
    let lines = error_lines(&validate(cfg.as_bytes(), &[], |_| {}));
    let text = lines.join("\n");
    assert!(
        text.contains(
            "config.yaml:55:9: egress.targets.notification.tls.enabled: the URL is http://"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "egress.targets.legacy-erp.tls.server_name: \"erp internal\" is not a valid DNS name"
        ),
        "{text}"
    );
}
