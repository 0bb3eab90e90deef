//! `auth.type: oauth2_token_exchange` and `client_auth: federated_token_file`: accepted shapes,
//! the push-only rule (both need a file on the refresher's host), and each mistake reported
//! with its field path.
#![cfg(feature = "yaml")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use egress_core::build::{filter_config, push_only, BuildOptions, PushOnly};
use egress_core::config::load::load_str;
use egress_core::config::{Auth, ClientAuth, ConfigErrors, Grant};
use egress_core::plan::{Credential, FilterConfig};
use egress_core::tokens::grant::GrantPlan;

fn no_env(_: &str) -> Option<String> {
    None
}

fn config(auth: &str) -> String {
    let auth: String = auth.lines().map(|l| format!("        {l}\n")).collect();
    format!(
        "http:\n  addr: \":8080\"\negress:\n  targets:\n    crm:\n      url: https://crm.example.com\n      auth:\n{auth}  routes:\n    - path_prefix: /egress/crm\n      target: crm\n"
    )
}

fn errors(auth: &str) -> ConfigErrors {
    load_str(&config(auth), &no_env).expect_err("config should be rejected")
}

fn has(errs: &ConfigErrors, path: &str, needle: &str) -> bool {
    errs.iter()
        .any(|e| e.path == path && e.message.contains(needle))
}

const BASE: &str = "egress.targets.crm.auth";
const EXCHANGE: &str = "type: oauth2_token_exchange\ntoken_url: https://sts.example.com/token\nsubject_token_file: /var/run/secrets/tokens/sa-token";

#[test]
fn a_token_exchange_target_is_push_only_and_its_proxy_holds_no_secret() {
    let c = load_str(
        &config(&format!("{EXCHANGE}\naudience: crm-api\nresource: https://crm.example.com/\nscopes: [read, write]\nclient_id: egress\nclient_secret: SECRET-x")),
        &no_env,
    )
    .unwrap();
    let t = c.target("crm").unwrap();
    let Auth::OAuth2(o) = &t.auth else {
        panic!("oauth2 expected")
    };
    let Grant::TokenExchange(x) = &o.grant else {
        panic!("token exchange expected")
    };
    assert_eq!(x.subject_token_file, "/var/run/secrets/tokens/sa-token");
    assert_eq!(x.subject_token_type, "urn:ietf:params:oauth:token-type:jwt");
    assert_eq!(x.audience.as_deref(), Some("crm-api"));
    assert_eq!(x.resource.as_deref(), Some("https://crm.example.com/"));
    assert_eq!(o.client_auth, ClientAuth::ClientSecretBasic);
    assert_eq!(t.auth.kind(), "oauth2_token_exchange");
    assert!(matches!(
        push_only(&c, t),
        Some(PushOnly::HostFile {
            field: "auth.subject_token_file",
            ..
        })
    ));
    // The proxy's copy: no fetching, no secret; the fetcher's copy has them.
    let f = FilterConfig::from_config(&c);
    let Credential::Oauth2(cred) = &f.targets[0].credential else {
        panic!("oauth2 credential expected")
    };
    assert!(!cred.fetch);
    assert!(cred.client_secret.is_none());
    assert_eq!(f.targets[0].credential.kind(), "oauth2_token_exchange");
    assert!(matches!(
        &cred.grant,
        GrantPlan::TokenExchange { audience: Some(a), .. } if a == "crm-api"
    ));
    let json = serde_json::to_vec(&f).unwrap();
    assert!(!String::from_utf8_lossy(&json).contains("SECRET-x"));
    assert_eq!(FilterConfig::from_json(&json).unwrap(), f);
    let fetcher = filter_config(
        &c,
        &BuildOptions {
            for_fetcher: true,
            ..Default::default()
        },
    );
    let Credential::Oauth2(cred) = &fetcher.targets[0].credential else {
        panic!("oauth2 credential expected")
    };
    assert_eq!(cred.client_secret.as_ref().unwrap().expose(), "SECRET-x");
}

#[test]
fn client_authentication_of_an_exchange_is_optional() {
    for (extra, want) in [
        ("", ClientAuth::None),
        ("\nclient_id: public-app", ClientAuth::None),
        (
            "\nclient_id: a\nclient_secret: s",
            ClientAuth::ClientSecretBasic,
        ),
        (
            "\nclient_id: a\nclient_secret: s\nclient_auth: client_secret_post",
            ClientAuth::ClientSecretPost,
        ),
        (
            "\nsubject_token_type: urn:ietf:params:oauth:token-type:access_token",
            ClientAuth::None,
        ),
    ] {
        let c = load_str(&config(&format!("{EXCHANGE}{extra}")), &no_env)
            .unwrap_or_else(|e| panic!("{extra}: {e}"));
        let Auth::OAuth2(o) = &c.target("crm").unwrap().auth else {
            panic!("oauth2 expected")
        };
        assert_eq!(o.client_auth, want, "{extra}");
    }
}

#[test]
fn every_token_exchange_mistake_is_reported_with_its_field_path() {
    let e = errors("type: oauth2_token_exchange");
    assert!(has(&e, &format!("{BASE}.token_url"), "is required"), "{e}");
    assert!(
        has(&e, &format!("{BASE}.subject_token_file"), "is required"),
        "{e}"
    );
    let e = errors(&format!(
        "{EXCHANGE}\nsubject_token_type: jwt\nresource: crm\naudience: \"\"\nscopes: [\"a b\"]\nparams: {{subject_token: x}}\nclient_auth: private_key_jwt"
    ));
    for (field, needle) in [
        ("subject_token_type", "not a token type URI"),
        ("resource", "absolute URI"),
        ("audience", "non-empty"),
        ("scopes[0]", "one non-empty word"),
        ("params.subject_token", "token-exchange flow itself"),
        (
            "client_auth",
            "not supported for auth type oauth2_token_exchange",
        ),
    ] {
        assert!(has(&e, &format!("{BASE}.{field}"), needle), "{field}: {e}");
    }
    let e = errors(&format!("{EXCHANGE}\nclient_secret: s"));
    assert!(
        has(
            &e,
            &format!("{BASE}.client_id"),
            "is required with client_auth: client_secret_basic"
        ),
        "{e}"
    );
    let e = errors(&format!(
        "{EXCHANGE}\nclient_id: a\nclient_auth: client_secret_post"
    ));
    assert!(
        has(
            &e,
            &format!("{BASE}.client_secret"),
            "is required with client_auth: client_secret_post"
        ),
        "{e}"
    );
    let e = errors(&format!(
        "{EXCHANGE}\nclient_id: a\nclient_secret: s\nclient_auth: none"
    ));
    assert!(
        has(
            &e,
            &format!("{BASE}.client_secret"),
            "not used with client_auth: none"
        ),
        "{e}"
    );
    let e = errors(&format!(
        "{EXCHANGE}\nprivate_key: k.pem\nfederated_token_file: /f"
    ));
    assert!(
        has(
            &e,
            &format!("{BASE}.private_key"),
            "does not apply to auth type oauth2_token_exchange"
        ),
        "{e}"
    );
    assert!(
        has(
            &e,
            &format!("{BASE}.federated_token_file"),
            "does not apply"
        ),
        "{e}"
    );
    // Fields of the exchange on another type.
    let e = errors("type: bearer\ntoken: t\nsubject_token_file: /f\nresource: https://x/");
    assert!(
        has(
            &e,
            &format!("{BASE}.subject_token_file"),
            "does not apply to auth type bearer"
        ),
        "{e}"
    );
    assert!(
        has(&e, &format!("{BASE}.resource"), "does not apply"),
        "{e}"
    );
}

const FEDERATED: &str = "type: oauth2_client_credentials\ntoken_url: https://login.microsoftonline.com/tenant/oauth2/v2.0/token\nclient_id: 00000000-app\nscopes: [\"https://graph.microsoft.com/.default\"]";

#[test]
fn a_federated_token_file_client_is_push_only_and_sends_no_secret() {
    let c = load_str(
        &config(&format!("{FEDERATED}\nclient_auth: federated_token_file\nfederated_token_file: /var/run/secrets/azure/tokens/azure-identity-token")),
        &no_env,
    )
    .unwrap();
    let t = c.target("crm").unwrap();
    let Auth::OAuth2(o) = &t.auth else {
        panic!("oauth2 expected")
    };
    assert_eq!(o.client_auth, ClientAuth::FederatedTokenFile);
    assert!(o.client_secret.is_none());
    assert_eq!(
        o.federated_token_file.as_deref(),
        Some("/var/run/secrets/azure/tokens/azure-identity-token")
    );
    assert!(matches!(
        push_only(&c, t),
        Some(PushOnly::HostFile {
            field: "auth.federated_token_file",
            ..
        })
    ));
    let f = FilterConfig::from_config(&c);
    let Credential::Oauth2(cred) = &f.targets[0].credential else {
        panic!("oauth2 credential expected")
    };
    assert!(!cred.fetch);
    assert_eq!(cred.client_auth, ClientAuth::FederatedTokenFile);
    let json = serde_json::to_vec(&f).unwrap();
    assert_eq!(FilterConfig::from_json(&json).unwrap(), f);
}

#[test]
fn every_federated_token_file_mistake_is_reported_with_its_field_path() {
    let e = errors(&format!("{FEDERATED}\nclient_auth: federated_token_file"));
    assert!(
        has(
            &e,
            &format!("{BASE}.federated_token_file"),
            "is required with client_auth: federated_token_file"
        ),
        "{e}"
    );
    let e = errors(&format!(
        "{FEDERATED}\nclient_secret: s\nfederated_token_file: /f"
    ));
    assert!(
        has(
            &e,
            &format!("{BASE}.federated_token_file"),
            "only applies to client_auth: federated_token_file"
        ),
        "{e}"
    );
    let e = errors(&format!("{FEDERATED}\nclient_auth: federated_token_file\nfederated_token_file: /f\nclient_secret: s\nprivate_key: k.pem"));
    assert!(
        has(
            &e,
            &format!("{BASE}.client_secret"),
            "not used with client_auth: federated_token_file"
        ),
        "{e}"
    );
    assert!(
        has(
            &e,
            &format!("{BASE}.private_key"),
            "only applies to client_auth: private_key_jwt"
        ),
        "{e}"
    );
    let e = errors(&format!(
        "{FEDERATED}\nclient_auth: federated_token_file\nfederated_token_file: \"\""
    ));
    assert!(
        has(
            &e,
            &format!("{BASE}.federated_token_file"),
            "must not be empty"
        ),
        "{e}"
    );
    let e = errors(&format!("{FEDERATED}\nclient_auth: federated"));
    assert!(
        has(&e, &format!("{BASE}.client_auth"), "federated_token_file"),
        "{e}"
    );
}
