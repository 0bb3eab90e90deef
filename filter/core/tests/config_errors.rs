//! Config loading: the seed is accepted as written, and every mistake is reported with its
//! field path and line:column, all at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use egress_core::config::load::load_str;
use egress_core::config::{Auth, TokenStore};
use support::{env, errors, find, has, SEED};

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

#[test]
fn a_bad_path_prefix_does_not_hide_the_routes_other_errors() {
    let yaml = r#"
http:
  addr: ":8080"
egress:
  targets:
    a:
      url: "https://a.example.com"
  routes:
    - path_prefix: "egress/a"
      target: nope
      methods: ["GET", "FETCH", "GET"]
      strip_prefix: "no-slash"
      rewrite_prefix: "/x/../y"
    - path_prefix: "/egress/b?q"
      target: also-nope
"#;
    let errs = errors(yaml);
    let text = errs.to_string();
    for (path, needle, line) in [
        ("egress.routes[0].path_prefix", "must start with '/'", 9),
        ("egress.routes[0].target", "unknown target", 10),
        ("egress.routes[0].methods[1]", "invalid method", 11),
        ("egress.routes[0].methods[2]", "listed twice", 11),
        ("egress.routes[0].strip_prefix", "must start with '/'", 12),
        ("egress.routes[0].rewrite_prefix", "segments", 13),
        ("egress.routes[1].path_prefix", "plain path", 14),
        ("egress.routes[1].target", "unknown target", 15),
    ] {
        let e = find(&errs, path).unwrap_or_else(|| panic!("no error at {path}: {text}"));
        assert!(e.message.contains(needle), "{path}: {text}");
        assert_eq!(e.location.map(|l| l.0), Some(line), "{path}: {text}");
    }
    assert_eq!(errs.len(), 8, "{text}");
}

#[test]
fn a_valid_strip_prefix_is_not_blamed_for_an_invalid_path_prefix() {
    let yaml = SEED.replace(
        "    - path_prefix: \"/egress/crm\"",
        "    - path_prefix: \"/egress//crm\"",
    );
    let errs = errors(&yaml);
    assert!(
        has(&errs, "egress.routes[0].path_prefix", "segments"),
        "{errs}"
    );
    assert!(
        find(&errs, "egress.routes[0].strip_prefix").is_none(),
        "{errs}"
    );
    assert_eq!(errs.len(), 1, "{errs}");
}

#[test]
fn an_unknown_token_store_type_still_checks_the_redis_block() {
    let yaml = SEED
        .replace("    type: redis\n", "    type: redys\n")
        .replace("address: \"redis:6379\"", "address: \"redis\"");
    let errs = errors(&yaml);
    assert!(
        has(&errs, "egress.token_store.type", "unknown token store"),
        "{errs}"
    );
    assert!(
        has(&errs, "egress.token_store.redis.address", "host:port"),
        "{errs}"
    );
    let errs = errors(&SEED.replace("address: \"redis:6379\"", "address: \"redis:0\""));
    assert!(
        has(&errs, "egress.token_store.redis.address", "1 to 65535"),
        "{errs}"
    );
}

#[test]
fn an_unknown_auth_type_does_not_hide_the_targets_other_errors() {
    let yaml = SEED
        .replace("        type: bearer\n", "        type: bearr\n")
        .replace(
            "https://analytics.example.com/api/v2",
            "https://analytics.example.com/a//b",
        );
    let errs = errors(&yaml);
    assert!(
        has(
            &errs,
            "egress.targets.analytics.auth.type",
            "unknown auth type"
        ),
        "{errs}"
    );
    assert!(
        has(&errs, "egress.targets.analytics.url", "not allowed"),
        "{errs}"
    );
}

#[test]
fn listener_port_zero_is_refused() {
    let errs = errors(&SEED.replace("addr: \":8080\"", "addr: \":0\""));
    let e = find(&errs, "http.addr").unwrap();
    assert!(e.message.contains("port 0"), "{errs}");
    assert_eq!(e.location, Some((5, 3)));
}

#[test]
fn urls_with_user_info_query_fragment_or_port_zero_are_refused() {
    for (bad, field) in [
        ("https://user:pw@mycompany.salesforce.com/x", "url"),
        ("https://mycompany.salesforce.com/x?a=1", "url"),
        ("https://mycompany.salesforce.com/x#frag", "url"),
        ("https://mycompany.salesforce.com:0/x", "url"),
        ("http://", "url"),
    ] {
        let yaml = SEED.replace("https://mycompany.salesforce.com/services/data/v58.0", bad);
        let errs = errors(&yaml);
        let path = format!("egress.targets.salesforce.{field}");
        let e = find(&errs, &path).unwrap_or_else(|| panic!("{bad}: {errs}"));
        assert_eq!(e.location.map(|l| l.0), Some(34), "{bad}: {errs}");
        assert!(!errs.to_string().contains("pw"), "{errs}");
    }
    for bad in [
        "https://id:secret@login.salesforce.com/token",
        "https://login.salesforce.com/token?x=1",
        "https://login.salesforce.com:0/token",
        "ftp://login.salesforce.com/token",
    ] {
        let yaml = SEED.replace("https://login.salesforce.com/services/oauth2/token", bad);
        let errs = errors(&yaml);
        assert!(
            find(&errs, "egress.targets.salesforce.auth.token_url").is_some(),
            "{bad}: {errs}"
        );
        assert!(!errs.to_string().contains("secret"), "{errs}");
    }
}

#[test]
fn every_value_of_the_wrong_type_is_reported_with_the_other_errors() {
    let yaml = SEED
        .replace("retry_count: 3", "retry_count: many")
        .replace("timeout: 15s", "timeout: 15")
        .replacen("methods: [\"POST\"]", "methods: [\"POST\", {a: 1}]", 1)
        .replace("target: analytics", "target: analytic");
    let errs = errors(&yaml);
    let text = errs.to_string();
    assert!(
        find(&errs, "egress.defaults.retry_count").is_some(),
        "{text}"
    );
    assert!(
        has(
            &errs,
            "egress.targets.salesforce.timeout",
            "expected a string"
        ),
        "{text}"
    );
    let m = find(&errs, "egress.routes[1].methods[1]").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(m.location.map(|l| l.0), Some(103), "{text}");
    assert!(
        has(&errs, "egress.routes[3].target", "unknown target"),
        "{text}"
    );
    assert_eq!(errs.len(), 4, "{text}");
}

#[test]
fn a_required_value_of_the_wrong_type_is_reported_once() {
    let yaml = SEED.replace(
        "url: \"https://notify.internal.svc\"",
        "url: [\"https://notify.internal.svc\"]",
    );
    let errs = errors(&yaml);
    assert!(
        has(&errs, "egress.targets.notification.url", "invalid type"),
        "{errs}"
    );
    assert_eq!(errs.len(), 1, "{errs}");
}

#[test]
fn a_target_of_the_wrong_type_does_not_make_its_routes_unknown() {
    let yaml = SEED
        .replace(
            "    # Notification Service - API Key\n    notification:\n",
            "    notification: oops\n    old_notification:\n",
        )
        .replace("retry_count: 3", "retry_count: []");
    let errs = errors(&yaml);
    let text = errs.to_string();
    assert!(
        has(&errs, "egress.targets.notification", "expected a mapping"),
        "{text}"
    );
    assert!(
        find(&errs, "egress.defaults.retry_count").is_some(),
        "{text}"
    );
    assert!(!text.contains("unknown target"), "{text}");
}

#[test]
fn path_mode_is_canonicalize_by_default_strict_when_asked_and_named_when_unknown() {
    use egress_core::config::PathMode;
    let base = support::one_target(
        "      url: https://t.example.com\n      auth:\n        type: bearer\n        token: x\n",
    );
    assert_eq!(
        load_str(&base, &env).unwrap().path_mode,
        PathMode::Canonicalize
    );
    let strict = base.replace("egress:\n", "egress:\n  path_mode: strict\n");
    assert_eq!(load_str(&strict, &env).unwrap().path_mode, PathMode::Strict);
    let errs = errors(&base.replace("egress:\n", "egress:\n  path_mode: relaxed\n"));
    assert!(
        has(&errs, "egress.path_mode", "expected canonicalize or strict"),
        "{errs}"
    );
}
