//! `oauth2_token_exchange`: RFC 8693. The subject token is the content of
//! `subject_token_file` on the refresher's host (a projected service-account token), so the
//! target is push-only: `egressctl token refresh` reads the file on every fetch, exchanges it
//! and pushes the token.

use super::super::super::error::{ConfigErrors, FieldPath};
use super::super::super::model::*;
use super::super::super::raw::*;
use super::oauth2::{params, scopes, token_tls, token_url, Timings};
use super::required;
use crate::secret::Secret;
use crate::tokens::exchange::{JWT_TOKEN_TYPE, KNOWN_TOKEN_TYPES};

const KIND: &str = "oauth2_token_exchange";

/// The auth fields `oauth2_token_exchange` takes.
pub(super) const FIELDS: &[&str] = &[
    "token_url",
    "subject_token_file",
    "subject_token_type",
    "audience",
    "resource",
    "scopes",
    "params",
    "client_id",
    "client_secret",
    "client_auth",
    "refresh_before_expiry",
    "token_timeout",
    "default_lifetime",
];

/// Form fields the exchange sets itself.
const RESERVED_PARAMS: &[&str] = &[
    "grant_type",
    "subject_token",
    "subject_token_type",
    "audience",
    "resource",
    "scope",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
];

pub(super) fn token_exchange(
    a: &RawAuth,
    tls: Option<&TlsSettings>,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<OAuth2Settings> {
    let url = required(&a.token_url, "token_url", KIND, path, errs)
        .and_then(|_| token_url(a, path, errs));
    let file = required(
        &a.subject_token_file,
        "subject_token_file",
        KIND,
        path,
        errs,
    );
    let subject_token_type = token_type(a.subject_token_type.as_deref(), path, errs);
    let audience = text(&a.audience, "audience", path, errs);
    let resource = absolute_uri(&a.resource, "resource", path, errs);
    let client = client_auth(a, path, errs);
    let scopes = scopes(a, path, errs);
    let params = params(a, RESERVED_PARAMS, "token-exchange", path, errs);
    let timings = Timings::of(a, path, errs);
    let (url, file, subject_token_type, (client_auth, client_id, client_secret)) =
        (url?, file?, subject_token_type?, client?);
    Some(OAuth2Settings {
        grant: Grant::TokenExchange(TokenExchangeGrant {
            subject_token_file: file.to_string(),
            subject_token_type,
            audience,
            resource,
        }),
        tls: token_tls(&url, tls),
        token_url: Some(url),
        client_id,
        client_secret,
        scopes,
        params,
        client_auth,
        private_key: None,
        signing_alg: SigningAlg::RS256,
        key_id: None,
        federated_token_file: None,
        refresh_before_expiry: timings.refresh_before_expiry,
        token_timeout: timings.token_timeout,
        default_lifetime: timings.default_lifetime,
    })
}

/// `subject_token_type`: default the JWT type; one of RFC 8693's types or another absolute
/// URI.
fn token_type(v: Option<&str>, path: &FieldPath, errs: &mut ConfigErrors) -> Option<String> {
    let Some(t) = v else {
        return Some(JWT_TOKEN_TYPE.to_string());
    };
    if KNOWN_TOKEN_TYPES.contains(&t) || is_absolute_uri(t) {
        return Some(t.to_string());
    }
    errs.push(
        path.key("subject_token_type").as_str(),
        format!(
            "{t:?} is not a token type URI; expected one of {} (default {JWT_TOKEN_TYPE})",
            KNOWN_TOKEN_TYPES.join(", ")
        ),
    );
    None
}

/// How the exchanging client authenticates: `client_secret_basic` (the default with a
/// `client_secret`), `client_secret_post`, or `none` (the default without one: `client_id`,
/// if given, is sent in the form; without it, nothing identifies the client).
fn client_auth(
    a: &RawAuth,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<(ClientAuth, String, Option<Secret>)> {
    let id = a.client_id.clone().unwrap_or_default();
    if a.client_id.as_deref() == Some("") {
        errs.push(path.key("client_id").as_str(), "must not be empty");
        return None;
    }
    let secret = a.client_secret.as_deref();
    let auth = match (a.client_auth.as_deref(), secret) {
        (None, Some(_)) | (Some("client_secret_basic"), _) => ClientAuth::ClientSecretBasic,
        (Some("client_secret_post"), _) => ClientAuth::ClientSecretPost,
        (None, None) | (Some("none"), _) => ClientAuth::None,
        (Some(other), _) => {
            errs.push(
                path.key("client_auth").as_str(),
                format!("{other:?} is not supported for auth type {KIND}; expected client_secret_basic, client_secret_post or none"),
            );
            return None;
        }
    };
    if auth == ClientAuth::None {
        if secret.is_some() {
            errs.push(
                path.key("client_secret").as_str(),
                "is not used with client_auth: none",
            );
            return None;
        }
        return Some((auth, id, None));
    }
    let method = if auth == ClientAuth::ClientSecretPost {
        "client_secret_post"
    } else {
        "client_secret_basic"
    };
    let mut ok = true;
    if a.client_id.is_none() {
        errs.push(
            path.key("client_id").as_str(),
            format!("is required with client_auth: {method}"),
        );
        ok = false;
    }
    match secret {
        Some("") => {
            errs.push(path.key("client_secret").as_str(), "must not be empty");
            ok = false;
        }
        None => {
            errs.push(
                path.key("client_secret").as_str(),
                format!("is required with client_auth: {method}"),
            );
            ok = false;
        }
        Some(_) => {}
    }
    ok.then(|| (auth, id, secret.map(Secret::new)))
}

/// An optional free-text value: non-empty, no control characters.
fn text(
    v: &Option<String>,
    field: &str,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<String> {
    let s = v.as_deref()?;
    if s.trim().is_empty() || s.chars().any(char::is_control) {
        errs.push(
            path.key(field).as_str(),
            "must be a non-empty string without control characters",
        );
        return None;
    }
    Some(s.to_string())
}

/// An optional absolute URI without fragment (RFC 8707 resource indicator).
fn absolute_uri(
    v: &Option<String>,
    field: &str,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<String> {
    let s = v.as_deref()?;
    if !is_absolute_uri(s) || s.contains('#') {
        errs.push(
            path.key(field).as_str(),
            format!(
                "{s:?} must be an absolute URI without a fragment (e.g. https://api.example.com/)"
            ),
        );
        return None;
    }
    Some(s.to_string())
}

/// `scheme:rest`, the scheme a letter then letters, digits, `+-.`; no blanks or controls.
fn is_absolute_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}
