//! `oauth2_jwt_bearer`: the RFC 7523 section 2.1 grant. The assertion is signed either with a
//! Google service-account key file (push-only: `egressctl token refresh` reads it on its host)
//! or with `private_key` for `issuer` / `subject` (inlined by `egressctl compile`; the filter
//! can sign and fetch).

use super::super::super::error::{ConfigErrors, FieldPath};
use super::super::super::model::*;
use super::super::super::raw::*;
use super::oauth2::{params, scopes, signing_alg, token_tls, token_url, Timings};
use super::required;

const KIND: &str = "oauth2_jwt_bearer";

/// The auth fields `oauth2_jwt_bearer` takes.
pub(super) const FIELDS: &[&str] = &[
    "token_url",
    "client_id",
    "service_account_file",
    "issuer",
    "subject",
    "private_key",
    "signing_alg",
    "key_id",
    "audience",
    "scopes",
    "params",
    "refresh_before_expiry",
    "token_timeout",
    "default_lifetime",
];

pub(super) fn jwt_bearer(
    a: &RawAuth,
    tls: Option<&TlsSettings>,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<OAuth2Settings> {
    let key = match a.service_account_file.as_deref() {
        Some(file) => service_account(a, file, path, errs),
        None => inline(a, path, errs),
    };
    let token_url = token_url(a, path, errs);
    if a.token_url.is_none() && a.service_account_file.is_none() {
        errs.push(
            path.key("token_url").as_str(),
            format!("is required for auth type {KIND} without service_account_file (whose token_uri is the default)"),
        );
    }
    let audience = opt_word(&a.audience, "audience", path, errs);
    let signing_alg = signing_alg(a, path, errs);
    let scopes = scopes(a, path, errs);
    let params = params(
        a,
        &["grant_type", "assertion", "scope"],
        "JWT-bearer",
        path,
        errs,
    );
    let timings = Timings::of(a, path, errs);
    let key = key?;
    if a.token_url.is_some() && token_url.is_none() {
        return None; // invalid, already reported
    }
    Some(OAuth2Settings {
        grant: Grant::JwtBearer(JwtBearerGrant { key, audience }),
        tls: token_url.as_ref().and_then(|u| token_tls(u, tls)),
        token_url,
        // Optional: sent as `client_id` (a public client, no authentication) for servers that
        // identify the client; Google does not need it.
        client_id: opt_word(&a.client_id, "client_id", path, errs).unwrap_or_default(),
        client_secret: None,
        scopes,
        params,
        client_auth: ClientAuth::None,
        private_key: a.private_key.clone(),
        signing_alg,
        key_id: a.key_id.clone(),
        federated_token_file: None,
        refresh_before_expiry: timings.refresh_before_expiry,
        token_timeout: timings.token_timeout,
        default_lifetime: timings.default_lifetime,
    })
}

/// `service_account_file`: the key file names the issuer, key and key id; `subject` is the
/// optional user to impersonate.
fn service_account(
    a: &RawAuth,
    file: &str,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<JwtBearerKey> {
    let mut ok = true;
    if file.is_empty() {
        errs.push(
            path.key("service_account_file").as_str(),
            "must not be empty",
        );
        ok = false;
    }
    for (field, set) in [
        ("issuer", a.issuer.is_some()),
        ("private_key", a.private_key.is_some()),
        ("key_id", a.key_id.is_some()),
    ] {
        if set {
            errs.push(
                path.key(field).as_str(),
                "does not apply with service_account_file (the key file provides it)",
            );
            ok = false;
        }
    }
    if a.signing_alg.as_deref().is_some_and(|s| s != "RS256") {
        errs.push(
            path.key("signing_alg").as_str(),
            "a service-account key signs with RS256 only",
        );
        ok = false;
    }
    let subject = opt_word(&a.subject, "subject", path, errs);
    ok.then(|| JwtBearerKey::ServiceAccountFile {
        path: file.to_string(),
        subject,
    })
}

/// `issuer`, `subject`, `private_key` in the config.
fn inline(a: &RawAuth, path: &FieldPath, errs: &mut ConfigErrors) -> Option<JwtBearerKey> {
    let issuer = required(&a.issuer, "issuer", KIND, path, errs);
    let subject = required(&a.subject, "subject", KIND, path, errs);
    let key = required(&a.private_key, "private_key", KIND, path, errs);
    for (field, v) in [("issuer", issuer), ("subject", subject)] {
        if v.is_some_and(|s| s.chars().any(char::is_control)) {
            errs.push(
                path.key(field).as_str(),
                "must not contain control characters",
            );
            return None;
        }
    }
    if a.key_id.as_deref().is_some_and(str::is_empty) {
        errs.push(path.key("key_id").as_str(), "must not be empty");
    }
    key?;
    Some(JwtBearerKey::Inline {
        issuer: issuer?.to_string(),
        subject: subject?.to_string(),
    })
}

fn opt_word(
    v: &Option<String>,
    field: &str,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<String> {
    match v.as_deref() {
        Some(s) if s.trim().is_empty() || s.chars().any(char::is_control) => {
            errs.push(
                path.key(field).as_str(),
                "must be a non-empty string without control characters",
            );
            None
        }
        other => other.map(str::to_string),
    }
}
