//! `egress.targets.<name>.auth`: the `type` picks a family, each in its own file; this file
//! checks the type, rejects fields of another type, and dispatches.
//!
//! Adding an auth type: list it in [`KINDS`] and [`fields_for`], add its fields to
//! [`set_fields`], and validate it in a new file beside [`headers`] and [`oauth2`].

mod aws;
mod federated;
mod headers;
mod jwt_bearer;
mod mtls;
mod oauth2;
mod token_exchange;

use super::super::error::{ConfigErrors, FieldPath};
use super::super::model::*;
use super::super::raw::*;

/// Every `auth.type` spelling.
const KINDS: &[&str] = &[
    "api_key",
    "bearer",
    "basic",
    "mtls",
    "oauth2_client_credentials",
    "aws_sigv4",
    "oauth2_jwt_bearer",
    "oauth2_token_exchange",
];

/// Which auth fields each type takes.
fn fields_for(kind: &str) -> &'static [&'static str] {
    match kind {
        "api_key" => &["header", "key"],
        "bearer" => &["token"],
        "basic" => &["username", "password"],
        "mtls" => &[],
        "oauth2_client_credentials" => &[
            "token_url",
            "client_id",
            "client_secret",
            "scopes",
            "refresh_before_expiry",
            "params",
            "client_auth",
            "private_key",
            "signing_alg",
            "key_id",
            "federated_token_file",
            "token_timeout",
            "default_lifetime",
        ],
        "oauth2_jwt_bearer" => jwt_bearer::FIELDS,
        "oauth2_token_exchange" => token_exchange::FIELDS,
        "aws_sigv4" => &[
            "region",
            "service",
            "access_key_id",
            "secret_access_key",
            "session_token",
            "payload",
            "web_identity",
        ],
        _ => &[],
    }
}

fn set_fields(a: &RawAuth) -> Vec<&'static str> {
    let mut v = Vec::new();
    let mut add = |name: &'static str, set: bool| {
        if set {
            v.push(name);
        }
    };
    add("header", a.header.is_some());
    add("key", a.key.is_some());
    add("token", a.token.is_some());
    add("username", a.username.is_some());
    add("password", a.password.is_some());
    add("token_url", a.token_url.is_some());
    add("client_id", a.client_id.is_some());
    add("client_secret", a.client_secret.is_some());
    add("scopes", a.scopes.is_some());
    add("refresh_before_expiry", a.refresh_before_expiry.is_some());
    add("params", a.params.is_some());
    add("client_auth", a.client_auth.is_some());
    add("private_key", a.private_key.is_some());
    add("signing_alg", a.signing_alg.is_some());
    add("key_id", a.key_id.is_some());
    add("token_timeout", a.token_timeout.is_some());
    add("default_lifetime", a.default_lifetime.is_some());
    add("service_account_file", a.service_account_file.is_some());
    add("issuer", a.issuer.is_some());
    add("subject", a.subject.is_some());
    add("audience", a.audience.is_some());
    add("subject_token_file", a.subject_token_file.is_some());
    add("subject_token_type", a.subject_token_type.is_some());
    add("resource", a.resource.is_some());
    add("federated_token_file", a.federated_token_file.is_some());
    add("region", a.region.is_some());
    add("service", a.service.is_some());
    add("access_key_id", a.access_key_id.is_some());
    add("secret_access_key", a.secret_access_key.is_some());
    add("session_token", a.session_token.is_some());
    add("payload", a.payload.is_some());
    add("web_identity", a.web_identity.is_some());
    v
}

pub(super) fn required<'a>(
    v: &'a Option<String>,
    field: &str,
    kind: &str,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<&'a str> {
    match v.as_deref() {
        Some(s) if !s.is_empty() => Some(s),
        Some(_) => {
            errs.push(path.key(field).as_str(), "must not be empty");
            None
        }
        None => {
            errs.push(
                path.key(field).as_str(),
                format!("is required for auth type {kind}"),
            );
            None
        }
    }
}

pub(in super::super) fn auth(
    raw: Option<&RawAuth>,
    tls: Option<&TlsSettings>,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Auth {
    let Some(a) = raw else {
        return Auth::None;
    };
    let kind = a.kind.as_str();
    if !KINDS.contains(&kind) {
        errs.push(
            path.key("type").as_str(),
            format!(
                "unknown auth type {kind:?}; expected one of {}",
                KINDS.join(", ")
            ),
        );
        return Auth::None;
    }
    let allowed = fields_for(kind);
    for f in set_fields(a) {
        if !allowed.contains(&f) {
            errs.push(
                path.key(f).as_str(),
                format!("does not apply to auth type {kind}"),
            );
        }
    }
    match kind {
        "api_key" => headers::api_key(a, path, errs),
        "bearer" => headers::bearer(a, path, errs),
        "basic" => headers::basic(a, path, errs),
        "mtls" => mtls::mtls(tls, path, errs),
        "aws_sigv4" => aws::aws_sigv4(a, tls, path, errs).map_or(Auth::None, Auth::AwsSigv4),
        "oauth2_jwt_bearer" => {
            jwt_bearer::jwt_bearer(a, tls, path, errs).map_or(Auth::None, Auth::OAuth2)
        }
        "oauth2_token_exchange" => {
            token_exchange::token_exchange(a, tls, path, errs).map_or(Auth::None, Auth::OAuth2)
        }
        _ => oauth2::oauth2(a, tls, path, errs)
            .map(Auth::OAuth2)
            .unwrap_or(Auth::None),
    }
}
