//! `auth.type: aws_sigv4`: accepted shapes, and each mistake reported with its field path.
#![cfg(feature = "yaml")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use egress_core::config::load::load_str;
use egress_core::config::{Auth, AwsCredentialSource, ConfigErrors};
use egress_core::plan::{Credential, FilterConfig};
use egress_core::sigv4::PayloadMode;

fn no_env(_: &str) -> Option<String> {
    None
}

fn config(auth: &str) -> String {
    let auth: String = auth.lines().map(|l| format!("        {l}\n")).collect();
    format!(
        "http:\n  addr: \":8080\"\negress:\n  targets:\n    s3:\n      url: http://127.0.0.1:5000\n      auth:\n{auth}  routes:\n    - path_prefix: /egress/s3\n      target: s3\n"
    )
}

fn errors(auth: &str) -> ConfigErrors {
    load_str(&config(auth), &no_env).expect_err("config should be rejected")
}

fn has(errs: &ConfigErrors, path: &str, needle: &str) -> bool {
    errs.iter()
        .any(|e| e.path == path && e.message.contains(needle))
}

const BASE: &str = "egress.targets.s3.auth";

#[test]
fn static_keys_are_accepted_and_reach_the_filter_config() {
    let c = load_str(
        &config("type: aws_sigv4\nregion: us-east-1\nservice: s3\naccess_key_id: AKIAEXAMPLE\nsecret_access_key: s3cr3t\nsession_token: tok\npayload: signed"),
        &no_env,
    )
    .unwrap();
    let Auth::AwsSigv4(a) = &c.target("s3").unwrap().auth else {
        panic!("aws_sigv4 expected")
    };
    assert_eq!(a.payload, PayloadMode::Signed);
    let AwsCredentialSource::Static(k) = &a.source else {
        panic!("static keys expected")
    };
    assert_eq!(k.session_token.as_ref().unwrap().expose(), "tok");
    let f = FilterConfig::from_config(&c);
    let Credential::AwsSigv4(cred) = &f.targets[0].credential else {
        panic!("aws_sigv4 credential expected")
    };
    assert_eq!(
        (cred.region.as_str(), cred.service.as_str()),
        ("us-east-1", "s3")
    );
    assert!(cred.keys.is_some());
    // The compiled JSON round-trips through the filter's strict parser.
    let json = serde_json::to_vec(&f).unwrap();
    assert_eq!(FilterConfig::from_json(&json).unwrap(), f);
}

#[test]
fn payload_defaults_to_unsigned() {
    let c = load_str(
        &config("type: aws_sigv4\nregion: eu-west-1\nservice: sts\naccess_key_id: AKIA1\nsecret_access_key: x"),
        &no_env,
    )
    .unwrap();
    let Auth::AwsSigv4(a) = &c.target("s3").unwrap().auth else {
        panic!()
    };
    assert_eq!(a.payload, PayloadMode::Unsigned);
}

#[test]
fn missing_and_malformed_fields_are_reported_with_their_path() {
    let e = errors("type: aws_sigv4\nregion: US East\npayload: maybe");
    assert!(
        has(&e, &format!("{BASE}.region"), "not an AWS region"),
        "{e:?}"
    );
    assert!(has(&e, &format!("{BASE}.service"), "is required"), "{e:?}");
    assert!(
        has(&e, &format!("{BASE}.access_key_id"), "is required"),
        "{e:?}"
    );
    assert!(
        has(&e, &format!("{BASE}.secret_access_key"), "is required"),
        "{e:?}"
    );
    assert!(
        has(&e, &format!("{BASE}.payload"), "unsigned or signed"),
        "{e:?}"
    );
}

#[test]
fn fields_of_other_auth_types_are_refused_both_ways() {
    let e = errors("type: aws_sigv4\nregion: us-east-1\nservice: s3\naccess_key_id: A\nsecret_access_key: s\ntoken: t");
    assert!(
        has(
            &e,
            &format!("{BASE}.token"),
            "does not apply to auth type aws_sigv4"
        ),
        "{e:?}"
    );
    let e = errors("type: bearer\ntoken: t\nregion: us-east-1");
    assert!(
        has(
            &e,
            &format!("{BASE}.region"),
            "does not apply to auth type bearer"
        ),
        "{e:?}"
    );
}

#[test]
fn web_identity_and_static_keys_exclude_each_other() {
    let e = errors("type: aws_sigv4\nregion: us-east-1\nservice: s3\naccess_key_id: A\nsecret_access_key: s\nweb_identity:\n  role_arn: arn:aws:iam::123456789012:role/r\n  token_file: /var/run/token");
    assert!(
        has(&e, &format!("{BASE}.web_identity"), "cannot be combined"),
        "{e:?}"
    );
}

#[test]
fn web_identity_fields_are_checked_with_their_paths() {
    let e = errors("type: aws_sigv4\nregion: us-east-1\nservice: s3\nweb_identity:\n  role_arn: not-an-arn\n  token_file: ''\n  session_name: x\n  sts_url: ftp://sts");
    for (field, needle) in [
        ("role_arn", "role ARN"),
        ("token_file", "file path"),
        ("session_name", "2 to 64"),
        ("sts_url", ""),
    ] {
        assert!(
            has(&e, &format!("{BASE}.web_identity.{field}"), needle),
            "{field}: {e:?}"
        );
    }
    // Missing fields are named with their path.
    let e = errors(
        "type: aws_sigv4\nregion: us-east-1\nservice: s3\nweb_identity:\n  session_name: egress",
    );
    assert!(
        has(&e, &format!("{BASE}.web_identity.role_arn"), "is required"),
        "{e:?}"
    );
    assert!(
        has(&e, &format!("{BASE}.web_identity.token_file"), "file path"),
        "{e:?}"
    );
}

#[test]
fn web_identity_is_accepted_as_a_push_only_target() {
    let c = load_str(
        &config("type: aws_sigv4\nregion: eu-west-1\nservice: s3\nweb_identity:\n  role_arn: arn:aws:iam::123456789012:role/r\n  token_file: /var/run/token"),
        &no_env,
    )
    .unwrap();
    let Auth::AwsSigv4(a) = &c.target("s3").unwrap().auth else {
        panic!("aws_sigv4 expected")
    };
    let AwsCredentialSource::WebIdentity(w) = &a.source else {
        panic!("web_identity expected")
    };
    assert_eq!(w.session_name, "egress");
    assert_eq!(
        w.sts_url.origin_and_base(),
        "https://sts.eu-west-1.amazonaws.com"
    );
    // The filter gets no keys: they come by push.
    let fc = FilterConfig::from_config(&c);
    let Credential::AwsSigv4(cred) = &fc.targets[0].credential else {
        panic!("aws_sigv4 credential expected")
    };
    assert!(cred.keys.is_none());
}

#[test]
fn no_secret_appears_in_an_error_or_debug_output() {
    let e = errors("type: aws_sigv4\nregion: us-east-1\nservice: s3\naccess_key_id: AK\nsecret_access_key: TOPSECRETVALUE\nsession_token: TOKENVALUE\nheader: x");
    let text = format!("{e:?}");
    assert!(!text.contains("TOPSECRETVALUE") && !text.contains("TOKENVALUE"));
    let c = load_str(
        &config("type: aws_sigv4\nregion: us-east-1\nservice: s3\naccess_key_id: AK\nsecret_access_key: TOPSECRETVALUE"),
        &no_env,
    )
    .unwrap();
    assert!(!format!("{c:?}").contains("TOPSECRETVALUE"));
}
