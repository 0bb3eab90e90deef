//! `aws_sigv4` with `web_identity` as a user meets it in `egressctl`: accepted by validate,
//! named push-only by compile and explain, refused by render istio, which cannot carry it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fleet::{render, setup};
use common::*;

const WEB_IDENTITY: &str = "    s3:\n      url: \"https://my-bucket.s3.eu-west-1.amazonaws.com\"\n      auth:\n        type: aws_sigv4\n        region: eu-west-1\n        service: s3\n        web_identity:\n          role_arn: arn:aws:iam::123456789012:role/egress\n          token_file: /var/run/secrets/token\n";

fn config() -> String {
    format!(
        "http:\n  addr: \":8080\"\negress:\n  targets:\n{WEB_IDENTITY}  routes:\n    - path_prefix: /egress/s3\n      target: s3\n      strip_prefix: /egress/s3\n"
    )
}

#[test]
fn validate_accepts_web_identity_and_explain_names_it_push_only() {
    let ctl = Ctl::new(&config());
    let out = ctl.run(&["validate", "config.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = ctl.run(&["explain", "config.yaml", "GET", "/egress/s3/k"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("push-only") && text.contains("egressctl token refresh"),
        "{text}"
    );
}

#[test]
fn compile_says_the_target_needs_token_refresh() {
    let ctl = Ctl::new(&config());
    let (out, _) = ctl.compile(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("target s3 (aws_sigv4 with web_identity) is push-only")
            && err.contains("egressctl token refresh --watch"),
        "{err}"
    );
}

#[test]
fn token_refresh_without_a_matching_target_is_a_usage_error() {
    let ctl = Ctl::new(&config());
    let out = ctl.run(&["token", "refresh", "config.yaml", "--target", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("web_identity"), "{}", stderr(&out));
}

#[test]
fn render_istio_refuses_web_identity_with_the_reason() {
    // render k8s renders the refresher with the token file mounted (ctl/tests/fleet_push_only.rs).
    let d = setup(WEB_IDENTITY);
    let out = render(d.path(), "istio", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        err.contains(
            "target s3: aws_sigv4 needs auth.web_identity.token_file (/var/run/secrets/token)"
        ) && err.contains("no push listener"),
        "{err}"
    );
}
