//! Config loading: the seed is accepted as written, and every mistake is reported with its
//! field path and line:column, all at once.
#![cfg(feature = "yaml")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use egress_core::config::load::load_str;
use egress_core::config::{Auth, ConfigErrors, TokenStore};

const SEED: &str = include_str!("../../../examples/config.yaml");

fn env(name: &str) -> Option<String> {
    match name {
        "REDIS_PASSWORD"
        | "SALESFORCE_CLIENT_ID"
        | "SALESFORCE_CLIENT_SECRET"
        | "NOTIFICATION_API_KEY"
        | "ANALYTICS_BEARER_TOKEN"
        | "ERP_USERNAME"
        | "ERP_PASSWORD" => Some(format!("v-{name}")),
        _ => None,
    }
}

fn errors(yaml: &str) -> ConfigErrors {
    load_str(yaml, &env).expect_err("config should be rejected")
}

fn has(errs: &ConfigErrors, path: &str, needle: &str) -> bool {
    errs.iter()
        .any(|e| e.path == path && e.message.contains(needle))
}

#[test]
fn seed_config_is_accepted_as_written() {
    let c = load_str(SEED, &env).unwrap();
    assert_eq!(c.targets.len(), 5);
    assert_eq!(c.routes.len(), 5);
    assert_eq!(c.http.listen.to_string(), "0.0.0.0:8080");
    assert!(
        matches!(c.token_store, TokenStore::Redis(ref r) if r.db == 1 && r.key_prefix == "egress:tokens:")
    );
    assert_eq!(c.defaults.retry_count, 3);
    let sf = c.target("salesforce").unwrap();
    assert_eq!(sf.timeout.as_secs(), 15);
    let Auth::OAuth2(o) = &sf.auth else {
        panic!("salesforce is oauth2")
    };
    assert_eq!(o.scopes, ["api", "refresh_token"]);
    assert_eq!(o.refresh_before_expiry.as_secs(), 300);
    assert_eq!(
        o.client_secret.as_ref().unwrap().expose(),
        "v-SALESFORCE_CLIENT_SECRET"
    );
    // analytics: an https URL without a tls block is verified TLS.
    let a = c.target("analytics").unwrap();
    assert!(a
        .tls
        .as_ref()
        .is_some_and(|t| !t.insecure_skip_verify && t.ca_cert.is_none()));
    assert!(
        c.target("legacy-erp")
            .unwrap()
            .tls
            .as_ref()
            .unwrap()
            .insecure_skip_verify
    );
    assert!(c
        .target("audit")
        .unwrap()
        .tls
        .as_ref()
        .unwrap()
        .client_cert
        .is_some());
}

#[test]
fn missing_variables_are_named_with_their_field() {
    let errs = load_str(SEED, &|n| if n == "ERP_PASSWORD" { None } else { env(n) }).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs}");
    let e = &errs.0[0];
    assert_eq!(e.path, "egress.targets.legacy-erp.auth.password");
    assert!(e.message.contains("ERP_PASSWORD"));
    assert!(e.location.is_some());
}

#[test]
fn every_error_is_reported_with_path_line_and_column() {
    let yaml = r#"
http:
  addr: ":8080"
  read_timout: 30s
egress:
  targets:
    a:
      url: "ftp://nope"
      auth:
        type: api_key
        header: "X-Key"
    b:
      url: "https://b.example.com"
      auth:
        type: carrier_pigeon
    c:
      url: "https://c.example.com"
      auth:
        type: mtls
  routes:
    - path_prefix: "/egress/a"
      target: a
      methods: ["GET", "FETCH"]
    - path_prefix: "/egress/a"
      target: zzz
      strip_prefix: "/other"
"#;
    let errs = errors(yaml);
    let text = errs.to_string();
    assert!(has(&errs, "http.read_timout", "unknown field"), "{text}");
    assert!(has(&errs, "egress.targets.a.url", "http://"), "{text}");
    assert!(
        has(&errs, "egress.targets.a.auth.key", "is required"),
        "{text}"
    );
    assert!(
        has(&errs, "egress.targets.b.auth.type", "unknown auth type"),
        "{text}"
    );
    assert!(
        has(&errs, "egress.targets.c.auth.type", "client_cert"),
        "{text}"
    );
    assert!(
        has(&errs, "egress.routes[0].methods[1]", "invalid method"),
        "{text}"
    );
    assert!(
        has(&errs, "egress.routes[1].path_prefix", "duplicate"),
        "{text}"
    );
    assert!(
        has(&errs, "egress.routes[1].target", "unknown target"),
        "{text}"
    );
    assert!(
        has(&errs, "egress.routes[1].strip_prefix", "not a prefix"),
        "{text}"
    );
    // Locations point at the offending lines.
    let unknown = errs.iter().find(|e| e.path == "http.read_timout").unwrap();
    assert_eq!(unknown.location, Some((4, 3)));
    let target = errs
        .iter()
        .find(|e| e.path == "egress.routes[1].target")
        .unwrap();
    assert_eq!(target.location.map(|l| l.0), Some(25));
    assert!(
        text.contains("25:7: egress.routes[1].target: unknown target \"zzz\""),
        "{text}"
    );
    assert!(errs.len() >= 9);
}

#[test]
fn unknown_keys_everywhere_are_all_reported() {
    let yaml = SEED
        .replace("  read_timeout: 30s", "  read_timeout: 30s\n  bogus_one: 1")
        .replace(
            "        refresh_before_expiry: 300s",
            "        refresh_before_expiry: 300s\n        bogus_two: x",
        )
        .replace("  level: info", "  level: info\n  bogus_three: y");
    let errs = errors(&yaml);
    assert!(has(&errs, "http.bogus_one", "unknown field"), "{errs}");
    assert!(
        has(
            &errs,
            "egress.targets.salesforce.auth.bogus_two",
            "unknown field"
        ),
        "{errs}"
    );
    assert!(has(&errs, "logger.bogus_three", "unknown field"), "{errs}");
}

#[test]
fn wrong_types_and_bad_durations_name_the_field() {
    let errs = errors(&SEED.replace("retry_count: 3", "retry_count: many"));
    assert!(
        errs.iter().any(|e| e.path == "egress.defaults.retry_count"),
        "{errs}"
    );
    let errs = errors(&SEED.replace("timeout: 15s", "timeout: 15"));
    assert!(
        has(
            &errs,
            "egress.targets.salesforce.timeout",
            "expected a string"
        ),
        "{errs}"
    );
    let errs = errors(&SEED.replace("timeout: 15s", "timeout: 15parsecs"));
    assert!(
        has(
            &errs,
            "egress.targets.salesforce.timeout",
            "invalid duration"
        ),
        "{errs}"
    );
}

#[test]
fn yaml_syntax_errors_have_a_location() {
    let errs = errors("http:\n  addr: [unclosed\n");
    assert_eq!(errs.len(), 1);
    assert!(errs.0[0].location.is_some());
    assert!(errs.0[0].message.contains("invalid YAML"));
}

#[test]
fn secrets_never_appear_in_error_messages() {
    let yaml = SEED.replace("header: \"X-API-Key\"", "header: \"Bad Header\"");
    let errs = load_str(&yaml, &|n| Some(format!("SECRET-{n}"))).unwrap_err();
    assert!(!errs.to_string().contains("SECRET-"), "{errs}");
}

#[test]
fn auth_fields_of_another_type_are_rejected() {
    let yaml = SEED.replace(
        "        token: \"${ANALYTICS_BEARER_TOKEN}\"",
        "        token: \"${ANALYTICS_BEARER_TOKEN}\"\n        username: bob",
    );
    let errs = errors(&yaml);
    assert!(
        has(
            &errs,
            "egress.targets.analytics.auth.username",
            "does not apply to auth type bearer"
        ),
        "{errs}"
    );
}

#[test]
fn insecure_skip_verify_with_a_ca_is_contradictory() {
    let yaml = SEED.replace(
        "        insecure_skip_verify: true  # Self-signed cert",
        "        insecure_skip_verify: true\n        ca_cert: /x.pem",
    );
    let errs = errors(&yaml);
    assert!(
        has(
            &errs,
            "egress.targets.legacy-erp.tls.insecure_skip_verify",
            "ca_cert"
        ),
        "{errs}"
    );
}
