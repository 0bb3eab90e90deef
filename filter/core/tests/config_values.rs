//! Values that would break every request, or could never work, are config errors with their
//! field path and line:column: control characters (a newline read with `${VAR}` above all),
//! TLS settings that contradict the URL, file fields naming folders, reserved header names; and
//! the file's own encoding (a byte order mark is accepted, bytes that are not UTF-8 located).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use egress_core::config::load::{load_bytes, load_str};
use egress_core::config::{Auth, ConfigErrors};
use support::{env, errors, find, has, one_target, SEED, SEED_VARS};

/// Where each seed variable lands, and its line in examples/config.yaml.
const VAR_FIELDS: [(&str, &str, usize); 7] = [
    ("REDIS_PASSWORD", "egress.token_store.redis.password", 20),
    (
        "SALESFORCE_CLIENT_ID",
        "egress.targets.salesforce.auth.client_id",
        39,
    ),
    (
        "SALESFORCE_CLIENT_SECRET",
        "egress.targets.salesforce.auth.client_secret",
        40,
    ),
    (
        "NOTIFICATION_API_KEY",
        "egress.targets.notification.auth.key",
        53,
    ),
    (
        "ANALYTICS_BEARER_TOKEN",
        "egress.targets.analytics.auth.token",
        76,
    ),
    (
        "ERP_USERNAME",
        "egress.targets.legacy-erp.auth.username",
        84,
    ),
    (
        "ERP_PASSWORD",
        "egress.targets.legacy-erp.auth.password",
        85,
    ),
];

const CONTROL: [&str; 9] = [
    "\n", "\r\n", "\r", "\0", "\x7f", "\t", "\x1b", "\x01", "\u{85}",
];

#[test]
fn a_control_character_from_an_environment_variable_is_an_error_at_its_field() {
    assert_eq!(VAR_FIELDS.len(), SEED_VARS.len());
    for (var, path, line) in VAR_FIELDS {
        for (n, bad) in CONTROL.iter().enumerate() {
            // At the end (the usual `$(cat file)` newline), and inside for some.
            let value = if n % 2 == 0 {
                format!("SECRET-{var}{bad}")
            } else {
                format!("SECRET-{bad}{var}")
            };
            let lookup = |name: &str| {
                if name == var {
                    Some(value.clone())
                } else {
                    env(name)
                }
            };
            let errs = load_str(SEED, &lookup).expect_err(&format!("{var} {bad:?}"));
            assert_eq!(errs.len(), 1, "{var} {bad:?}: {errs}");
            let e = &errs.0[0];
            assert_eq!(e.path, path, "{errs}");
            assert_eq!(e.location.map(|l| l.0), Some(line), "{errs}");
            assert!(e.message.contains("control character"), "{errs}");
            assert!(e.message.contains("environment variable"), "{errs}");
            let text = errs.to_string();
            assert!(!text.contains("SECRET-"), "{text}");
            assert_eq!(text.lines().count(), 1, "{text:?}");
        }
    }
}

#[test]
fn control_characters_written_in_the_file_are_errors_too() {
    // YAML escapes and block scalars put control characters in without any variable.
    let cases: [(&str, &str, &str); 8] = [
        (
            "header: \"X-API-Key\"",
            "header: \"X-API-Key\\n\"",
            "egress.targets.notification.auth.header",
        ),
        (
            "scopes: [\"api\", \"refresh_token\"]",
            "scopes: [\"api\", \"refresh\\0token\"]",
            "egress.targets.salesforce.auth.scopes[1]",
        ),
        (
            "        refresh_before_expiry: 300s",
            "        refresh_before_expiry: 300s\n        params: {audience: \"https://x\\r\\n\"}",
            "egress.targets.salesforce.auth.params.audience",
        ),
        (
            "        token: \"${ANALYTICS_BEARER_TOKEN}\"",
            "        token: |\n          literal-token",
            "egress.targets.analytics.auth.token",
        ),
        (
            "key_prefix: \"egress:tokens:\"",
            "key_prefix: \"egress:\\ttokens:\"",
            "egress.token_store.redis.key_prefix",
        ),
        (
            "address: \"redis:6379\"",
            "address: \"redis:6379\\n\"",
            "egress.token_store.redis.address",
        ),
        (
            "ca_cert: \"/etc/certs/audit-ca.crt\"",
            "ca_cert: \"/etc/certs/audit-ca.crt\\n\"",
            "egress.targets.audit.tls.ca_cert",
        ),
        (
            "  level: info",
            "  level: info\n  output: \"/var/log/egress\\u0000.log\"",
            "logger.output",
        ),
    ];
    for (from, to, path) in cases {
        assert!(SEED.contains(from), "{from}");
        let errs = errors(&SEED.replace(from, to));
        assert!(has(&errs, path, "control character"), "{path}: {errs}");
        assert!(find(&errs, path).unwrap().location.is_some(), "{errs}");
        assert!(
            !find(&errs, path).unwrap().message.contains("environment"),
            "{errs}"
        );
        assert!(errs.to_string().lines().all(|l| l.contains(": ")), "{errs}");
    }
}

#[test]
fn a_key_with_a_control_character_is_reported_on_one_line() {
    let yaml = SEED.replace(
        "        refresh_before_expiry: 300s",
        "        refresh_before_expiry: 300s\n        params: {\"aud\\nience\": x}",
    );
    let errs = errors(&yaml);
    assert!(
        has(
            &errs,
            "egress.targets.salesforce.auth.params",
            "key contains a control character"
        ),
        "{errs}"
    );
    // Also an unknown key spelled with an escape: the rendered error stays one line per error.
    let errs = errors(&SEED.replace(
        "  read_timeout: 30s",
        "  read_timeout: 30s\n  \"bo\\ngus\": 1",
    ));
    let text = errs.to_string();
    assert_eq!(text.lines().count(), errs.len(), "{text:?}");
    assert!(text.contains("bo\\ngus"), "{text}");
}

#[test]
fn credentials_sent_verbatim_must_not_begin_or_end_with_a_space() {
    for (var, path) in [
        (
            "NOTIFICATION_API_KEY",
            "egress.targets.notification.auth.key",
        ),
        (
            "ANALYTICS_BEARER_TOKEN",
            "egress.targets.analytics.auth.token",
        ),
    ] {
        for v in [" lead", "trail "] {
            let lookup = |n: &str| {
                if n == var {
                    Some(v.to_string())
                } else {
                    env(n)
                }
            };
            let errs = load_str(SEED, &lookup).unwrap_err();
            assert!(has(&errs, path, "space"), "{errs}");
            assert_eq!(errs.len(), 1, "{errs}");
        }
    }
    // Inside the value, and around basic credentials (base64-encoded), spaces are fine.
    let lookup = |n: &str| match n {
        "NOTIFICATION_API_KEY" => Some("a b".into()),
        "ERP_PASSWORD" => Some(" pass word ".into()),
        _ => env(n),
    };
    load_str(SEED, &lookup).unwrap();
}

#[test]
fn api_key_header_names_that_cannot_carry_a_credential() {
    for (bad, needle) in [
        (":authority", "pseudo-header"),
        (":path", "pseudo-header"),
        ("Host", "cannot carry"),
        ("x-envoy-upstream-rq-timeout-ms", "x-envoy"),
        ("X-Envoy-Retry-On", "x-envoy"),
        ("x-egress-target", "cannot carry"),
        ("Transfer-Encoding", "cannot carry"),
        ("X API Key", "not a valid header name"),
        ("X-Key:", "not a valid header name"),
    ] {
        let errs = errors(&SEED.replace("header: \"X-API-Key\"", &format!("header: \"{bad}\"")));
        assert!(
            has(&errs, "egress.targets.notification.auth.header", needle),
            "{bad}: {errs}"
        );
        assert_eq!(
            find(&errs, "egress.targets.notification.auth.header")
                .unwrap()
                .location,
            Some((52, 9))
        );
    }
    // Authorization is how many APIs take a key.
    let c = load_str(
        &SEED.replace("header: \"X-API-Key\"", "header: \"Authorization\""),
        &env,
    )
    .unwrap();
    assert!(
        matches!(&c.target("notification").unwrap().auth, Auth::ApiKey { header, .. } if header == "authorization")
    );
}

#[test]
fn tls_with_an_http_url_is_an_error_that_says_to_use_https() {
    let target = "      url: \"http://a.example.com\"\n      tls:\n        enabled: true\n";
    let errs = errors(&one_target(target));
    let e = find(&errs, "egress.targets.t.tls.enabled").unwrap();
    assert!(e.message.contains("https://"), "{errs}");
    assert_eq!(e.location, Some((8, 9)));
    assert_eq!(errs.len(), 1, "{errs}");
    // TLS fields with an http URL were silently turning TLS on: now each is an error.
    let target = "      url: \"http://a.example.com\"\n      tls:\n        ca_cert: /ca.pem\n        server_name: a.example.com\n";
    let errs = errors(&one_target(target));
    assert!(
        has(&errs, "egress.targets.t.tls.ca_cert", "https://"),
        "{errs}"
    );
    assert!(
        has(&errs, "egress.targets.t.tls.server_name", "https://"),
        "{errs}"
    );
    // mtls over http cannot work.
    let target = "      url: \"http://a.example.com\"\n      auth: {type: mtls}\n      tls: {client_cert: /c.pem, client_key: /k.pem}\n";
    let errs = errors(&one_target(target));
    assert!(
        has(&errs, "egress.targets.t.tls.client_cert", "https://"),
        "{errs}"
    );
    assert!(
        has(&errs, "egress.targets.t.auth.type", "https URL"),
        "{errs}"
    );
    // Plain http, and `enabled: false` with it, stay valid.
    load_str(
        &one_target("      url: \"http://a.example.com\"\n      tls: {enabled: false}\n"),
        &env,
    )
    .unwrap();
}

#[test]
fn server_name_must_be_a_dns_name_or_an_ip_address() {
    for bad in [
        "bad name",
        "a..example.com",
        "-a.example.com",
        "a.example.com/x",
        "a.example.com:443",
        "https://a.example.com",
    ] {
        let target = format!(
            "      url: \"https://a.example.com\"\n      tls:\n        server_name: \"{bad}\"\n"
        );
        let errs = errors(&one_target(&target));
        let e = find(&errs, "egress.targets.t.tls.server_name")
            .unwrap_or_else(|| panic!("{bad}: {errs}"));
        assert!(e.message.contains("not a valid DNS name"), "{errs}");
        assert_eq!(e.location, Some((8, 9)), "{errs}");
    }
    // A newline is reported once, as a control character.
    let target = "      url: \"https://a.example.com\"\n      tls:\n        server_name: \"a.example.com\\n\"\n";
    let errs = errors(&one_target(target));
    assert_eq!(errs.len(), 1, "{errs}");
    assert!(
        has(&errs, "egress.targets.t.tls.server_name", "line feed"),
        "{errs}"
    );
    for good in ["a.example.com", "10.0.0.1", "::1", "svc_1.internal"] {
        let target = format!(
            "      url: \"https://a.example.com\"\n      tls:\n        server_name: \"{good}\"\n"
        );
        let c = load_str(&one_target(&target), &env).unwrap();
        assert_eq!(
            c.target("t").unwrap().tls.as_ref().unwrap().server_name,
            good
        );
    }
}

#[test]
fn file_fields_naming_a_folder_are_errors_relative_to_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    std::fs::write(dir.path().join("certs/ca.pem"), "x").unwrap();
    let abs = dir.path().join("certs").display().to_string();
    let yaml = format!(
        "http:\n  addr: \":8080\"\negress:\n  targets:\n    a:\n      url: \"https://a.example.com\"\n      auth: {{type: mtls}}\n      tls:\n        ca_cert: certs\n        client_cert: \"{abs}\"\n        client_key: certs/\n    o:\n      url: \"https://o.example.com\"\n      auth:\n        type: oauth2_client_credentials\n        token_url: https://o.example.com/token\n        client_id: id\n        client_auth: private_key_jwt\n        private_key: certs\n  routes:\n    - {{path_prefix: /egress/a, target: a}}\nlogger:\n  output: certs\n"
    );
    let errs = load_bytes(yaml.as_bytes(), Some(dir.path()), &env).unwrap_err();
    for (path, line) in [
        ("egress.targets.a.tls.ca_cert", 9),
        ("egress.targets.a.tls.client_cert", 10),
        ("egress.targets.a.tls.client_key", 11),
        ("egress.targets.o.auth.private_key", 19),
        ("logger.output", 23),
    ] {
        let e = find(&errs, path).unwrap_or_else(|| panic!("{path}: {errs}"));
        assert!(e.message.contains("is a folder"), "{errs}");
        assert_eq!(e.location.map(|l| l.0), Some(line), "{errs}");
    }
    assert_eq!(errs.len(), 5, "{errs}");
    // Files, and paths that do not exist here (validate may run elsewhere), are accepted.
    let ok = yaml
        .replace("ca_cert: certs\n", "ca_cert: certs/ca.pem\n")
        .replace(&format!("\"{abs}\""), "/nonexistent/c.pem")
        .replace("client_key: certs/", "client_key: certs/k.pem")
        .replace("private_key: certs", "private_key: k.pem")
        .replace("output: certs", "output: egress.log");
    load_bytes(ok.as_bytes(), Some(dir.path()), &env).unwrap();
    // Without a folder to resolve against (load_str), nothing is looked up.
    load_str(&yaml, &env).unwrap();
}

#[test]
fn a_byte_order_mark_is_skipped() {
    let with_bom = format!("\u{feff}{SEED}");
    let c = load_str(&with_bom, &env).unwrap();
    assert_eq!(c.targets.len(), 5);
    let c = load_bytes(with_bom.as_bytes(), None, &env).unwrap();
    assert_eq!(c.routes.len(), 5);
    // Positions stay those an editor shows.
    let errs = errors(&with_bom.replace("retry_count: 3", "retry_count: 11"));
    assert_eq!(
        find(&errs, "egress.defaults.retry_count").unwrap().location,
        Some((27, 5))
    );
    // One anywhere else (two files pasted together) is located, not "more than one document".
    let inside = SEED.replace("  defaults:\n", "  defaults:\n\u{feff}");
    let errs = errors(&inside);
    assert_eq!(errs.len(), 1, "{errs}");
    assert!(errs.0[0].message.contains("byte order mark"), "{errs}");
    assert_eq!(errs.0[0].location, Some((26, 1)), "{errs}");
    let errs = errors(&format!("\u{feff}\u{feff}{SEED}"));
    assert_eq!(errs.0[0].location, Some((1, 1)), "{errs}");
}

#[test]
fn a_second_document_is_located() {
    let errs = errors(&format!("{SEED}\n---\nhttp: {{addr: \":1\"}}\n"));
    assert_eq!(errs.len(), 1, "{errs}");
    assert!(errs.0[0].message.contains("second YAML document"), "{errs}");
    assert_eq!(
        errs.0[0].location.map(|l| l.0),
        Some(SEED.lines().count() + 2),
        "{errs}"
    );
}

#[test]
fn a_missing_required_field_is_named_by_its_own_path() {
    let errs = errors(&SEED.replace("      target: salesforce\n", ""));
    let e = find(&errs, "egress.routes[0].target").unwrap_or_else(|| panic!("{errs}"));
    assert_eq!(e.message, "is required");
    assert!(e.location.is_some());
    let errs = errors("http:\n  addr: \":8080\"\n");
    assert!(has(&errs, "egress", "is required"), "{errs}");
    let errs = errors("- a\n- b\n");
    assert!(errs.0[0].message.contains("expected a mapping"), "{errs}");
    assert_eq!(errs.0[0].location, Some((1, 1)), "{errs}");
}

#[test]
fn bytes_that_are_not_utf8_are_located() {
    let mut bytes = SEED.as_bytes().to_vec();
    let at = SEED.find("X-API-Key").unwrap() + 2;
    bytes[at] = 0xff;
    let errs: ConfigErrors = load_bytes(&bytes, None, &env).unwrap_err();
    assert_eq!(errs.len(), 1);
    let e = &errs.0[0];
    assert!(e.message.contains("UTF-8"), "{errs}");
    assert_eq!(e.location, Some((52, 20)), "{errs}");
}

/// `http.addr`, `--admin` and `--push-addr` errors show these texts: kept as they were.
#[test]
fn listen_address_errors_keep_their_texts() {
    use egress_core::config::{ListenAddr, ListenAddrError};
    let text = |a: &str| ListenAddr::parse(a).map(|_| ()).map_err(|e| e.to_string());
    assert_eq!(
        text("8080"),
        Err(r#""8080" is not host:port (e.g. ":8080" or "127.0.0.1:8080")"#.into())
    );
    assert_eq!(
        text("127.0.0.1:http"),
        Err(r#"port "http" in "127.0.0.1:http" is not a number from 0 to 65535"#.into())
    );
    assert_eq!(
        text("egress:8080"),
        Err(r#"host "egress" in "egress:8080" must be an IP address, localhost, or empty for all interfaces"#.into())
    );
    assert_eq!(
        ListenAddr::parse(":99999"),
        Err(ListenAddrError::Port {
            port: "99999".into(),
            text: ":99999".into()
        })
    );
}
