//! `auth.type: oauth2_jwt_bearer`: accepted shapes, each mistake with its field path, and the
//! per-target push-only rule (a service-account key file is read only by the refresher).
#![cfg(feature = "yaml")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use egress_core::build::{filter_config, push_only, BuildOptions, PushOnly};
use egress_core::config::load::load_str;
use egress_core::config::{Auth, ClientAuth, Config, ConfigErrors, Grant, JwtBearerKey};
use egress_core::plan::{Credential, FilterConfig, OAuth2Credential};
use egress_core::secret::Secret;
use egress_core::tokens::grant::GrantPlan;
use egress_core::tokens::service_account::ServiceAccountKey;

fn no_env(_: &str) -> Option<String> {
    None
}

/// One `gcs` target with `auth`, one client-credentials `crm` target, and `extra` top-level
/// `egress` YAML (e.g. a token store).
fn config_with(auth: &str, extra: &str) -> String {
    let auth: String = auth.lines().map(|l| format!("        {l}\n")).collect();
    format!(
        "http:\n  addr: \":8080\"\negress:\n{extra}  targets:\n    gcs:\n      url: https://storage.example.com\n      auth:\n{auth}    crm:\n      url: http://127.0.0.1:9\n      auth:\n        type: oauth2_client_credentials\n        token_url: http://127.0.0.1:9/token\n        client_id: crm\n        client_secret: crm-secret\n  routes:\n    - path_prefix: /egress/gcs\n      target: gcs\n    - path_prefix: /egress/crm\n      target: crm\n"
    )
}

fn load(auth: &str) -> Config {
    load_str(&config_with(auth, ""), &no_env).unwrap()
}

fn errors(auth: &str) -> ConfigErrors {
    load_str(&config_with(auth, ""), &no_env).expect_err("config should be rejected")
}

fn has(errs: &ConfigErrors, path: &str, needle: &str) -> bool {
    errs.iter()
        .any(|e| e.path == path && e.message.contains(needle))
}

const BASE: &str = "egress.targets.gcs.auth";
const SA: &str = "type: oauth2_jwt_bearer\nservice_account_file: /var/run/keys/gcs.json\nscopes: [https://www.googleapis.com/auth/devstorage.read_only]";
const INLINE: &str = "type: oauth2_jwt_bearer\ntoken_url: https://idp.example.com/oauth2/token\nissuer: egress@example.com\nsubject: svc-reports\nprivate_key: keys/jwt.pem\nkey_id: k1\naudience: https://idp.example.com\nscopes: [read, write]";

fn oauth2(fc: &FilterConfig, name: &str) -> OAuth2Credential {
    let t = fc.targets.iter().find(|t| t.name == name).unwrap();
    let Credential::Oauth2(c) = &t.credential else {
        panic!("{name}: oauth2 expected")
    };
    c.clone()
}

fn sa_key() -> ServiceAccountKey {
    ServiceAccountKey {
        client_email: "egress@proj.iam.gserviceaccount.com".into(),
        private_key: Secret::new("-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n"),
        private_key_id: "kid-123".into(),
        token_uri: egress_core::target_url::TargetUrl::parse("https://oauth2.example.com/token")
            .unwrap(),
    }
}

#[test]
fn a_service_account_target_is_push_only_and_its_neighbour_is_not() {
    let c = load(SA);
    let gcs = c.target("gcs").unwrap();
    assert_eq!(gcs.auth.kind(), "oauth2_jwt_bearer");
    let Auth::OAuth2(o) = &gcs.auth else {
        panic!("oauth2 expected")
    };
    assert!(
        o.token_url.is_none(),
        "the key file's token_uri is the default"
    );
    assert_eq!(o.client_auth, ClientAuth::None);
    let Grant::JwtBearer(j) = &o.grant else {
        panic!("jwt bearer expected")
    };
    assert!(
        matches!(&j.key, JwtBearerKey::ServiceAccountFile { path, subject: None } if path == "/var/run/keys/gcs.json")
    );
    assert_eq!(
        push_only(&c, gcs),
        Some(PushOnly::HostFile {
            field: "auth.service_account_file",
            path: "/var/run/keys/gcs.json".into()
        })
    );
    // Per target: the client-credentials target in the same config is fetched by the filter.
    assert_eq!(push_only(&c, c.target("crm").unwrap()), None);
    let fc = FilterConfig::from_config(&c);
    let g = oauth2(&fc, "gcs");
    assert!(!g.fetch);
    assert!(g.private_key_pem.is_none() && g.client_secret.is_none());
    assert_eq!(g.grant.kind(), "oauth2_jwt_bearer");
    assert!(oauth2(&fc, "crm").fetch);
    assert_eq!(fc.targets[0].credential.kind(), "oauth2_jwt_bearer");
    // The filter's strict parser takes what the builder wrote.
    let json = serde_json::to_vec(&fc).unwrap();
    assert_eq!(FilterConfig::from_json(&json).unwrap(), fc);
}

#[test]
fn the_refresher_builds_a_service_account_target_from_the_key_file() {
    let c = load(&format!("{SA}\nsubject: admin@example.com"));
    let opts = BuildOptions {
        for_fetcher: true,
        service_accounts: [("gcs".to_string(), sa_key())].into(),
        ..Default::default()
    };
    let g = oauth2(&filter_config(&c, &opts), "gcs");
    assert!(g.fetch);
    assert_eq!(
        g.grant,
        GrantPlan::JwtBearer {
            issuer: "egress@proj.iam.gserviceaccount.com".into(),
            subject: Some("admin@example.com".into()),
            audience: None,
        }
    );
    assert_eq!(
        g.token_url.unwrap().origin_and_base(),
        "https://oauth2.example.com/token"
    );
    assert_eq!(g.key_id.as_deref(), Some("kid-123"));
    assert!(g.private_key_pem.is_some());
    // An explicit token_url wins over the key file's.
    let c = load(&format!("{SA}\ntoken_url: https://proxy.example.com/token"));
    let g = oauth2(&filter_config(&c, &opts), "gcs");
    assert_eq!(
        g.token_url.unwrap().origin_and_base(),
        "https://proxy.example.com/token"
    );
}

#[test]
fn an_inline_key_runs_in_the_filter_unless_the_token_store_is_redis() {
    let c = load(INLINE);
    let gcs = c.target("gcs").unwrap();
    assert_eq!(push_only(&c, gcs), None);
    let opts = BuildOptions {
        private_keys: [("gcs".to_string(), Secret::new("PEM"))].into(),
        ..Default::default()
    };
    let g = oauth2(&filter_config(&c, &opts), "gcs");
    assert!(g.fetch);
    assert_eq!(g.private_key_pem.as_ref().map(|s| s.expose()), Some("PEM"));
    assert_eq!(
        g.grant,
        GrantPlan::JwtBearer {
            issuer: "egress@example.com".into(),
            subject: Some("svc-reports".into()),
            audience: Some("https://idp.example.com".into()),
        }
    );
    assert_eq!((g.key_id.as_deref(), g.scopes.len()), (Some("k1"), 2));

    let redis = "  token_store:\n    type: redis\n    redis:\n      address: 127.0.0.1:6379\n";
    let c = load_str(&config_with(INLINE, redis), &no_env).unwrap();
    for name in ["gcs", "crm"] {
        assert_eq!(
            push_only(&c, c.target(name).unwrap()),
            Some(PushOnly::TokenStore)
        );
    }
    let g = oauth2(&filter_config(&c, &opts), "gcs");
    assert!(!g.fetch && g.private_key_pem.is_none());
}

#[test]
fn every_mistake_is_reported_with_its_field_path() {
    let e = errors("type: oauth2_jwt_bearer");
    for f in ["issuer", "subject", "private_key", "token_url"] {
        assert!(has(&e, &format!("{BASE}.{f}"), "required"), "{f}: {e}");
    }
    let e = errors(&format!(
        "{SA}\nissuer: x\nprivate_key: k.pem\nkey_id: k\nsigning_alg: ES256\nclient_secret: c\naudience: \"\""
    ));
    for f in ["issuer", "private_key", "key_id"] {
        assert!(
            has(&e, &format!("{BASE}.{f}"), "key file provides it"),
            "{f}: {e}"
        );
    }
    assert!(has(&e, &format!("{BASE}.signing_alg"), "RS256 only"), "{e}");
    assert!(
        has(&e, &format!("{BASE}.client_secret"), "does not apply"),
        "{e}"
    );
    assert!(has(&e, &format!("{BASE}.audience"), "non-empty"), "{e}");
    let e = errors(&format!(
        "{INLINE}\nparams: {{assertion: x}}\nservice_account_file: \"\""
    ));
    assert!(
        has(&e, &format!("{BASE}.params.assertion"), "JWT-bearer flow"),
        "{e}"
    );
    assert!(
        has(&e, &format!("{BASE}.service_account_file"), "empty"),
        "{e}"
    );
    let e = errors("type: oauth2_jwt_bearer\ntoken_url: ftp://x/token\nissuer: i\nsubject: s\nprivate_key: k.pem\nsigning_alg: HS256\nscopes: [\"a b\"]");
    assert!(has(&e, &format!("{BASE}.token_url"), ""), "{e}");
    assert!(has(&e, &format!("{BASE}.signing_alg"), "HS256"), "{e}");
    assert!(
        has(&e, &format!("{BASE}.scopes[0]"), "one non-empty word"),
        "{e}"
    );
}
