//! `api_key`, `bearer` and `basic`: a static credential sent in a request header.

use super::super::super::error::{ConfigErrors, FieldPath};
use super::super::super::model::*;
use super::super::super::raw::*;
use super::required;
use crate::secret::Secret;

pub(super) fn api_key(a: &RawAuth, path: &FieldPath, errs: &mut ConfigErrors) -> Auth {
    let kind = "api_key";
    let header = required(&a.header, "header", kind, path, errs);
    if let Some(h) = header {
        if let Err(e) = check_credential_header(h) {
            errs.push(path.key("header").as_str(), e);
        }
    }
    let key = required(&a.key, "key", kind, path, errs);
    match (header, key) {
        (Some(h), Some(k)) => Auth::ApiKey {
            header: h.to_ascii_lowercase(),
            key: Secret::new(k),
        },
        _ => Auth::None,
    }
}

pub(super) fn bearer(a: &RawAuth, path: &FieldPath, errs: &mut ConfigErrors) -> Auth {
    match required(&a.token, "token", "bearer", path, errs) {
        Some(t) => Auth::Bearer {
            token: Secret::new(t),
        },
        None => Auth::None,
    }
}

pub(super) fn basic(a: &RawAuth, path: &FieldPath, errs: &mut ConfigErrors) -> Auth {
    let kind = "basic";
    let user = required(&a.username, "username", kind, path, errs);
    if user.is_some_and(|u| u.contains(':')) {
        errs.push(path.key("username").as_str(), "must not contain ':'");
    }
    let pass = required(&a.password, "password", kind, path, errs);
    match (user, pass) {
        (Some(u), Some(p)) => Auth::Basic {
            username: u.to_string(),
            password: Secret::new(p),
        },
        _ => Auth::None,
    }
}

fn check_credential_header(h: &str) -> Result<(), String> {
    let token = !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(format!("{h:?} is not a valid header name"));
    }
    let lower = h.to_ascii_lowercase();
    const FORBIDDEN: [&str; 8] = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "te",
        "upgrade",
        "keep-alive",
        "proxy-connection",
    ];
    if FORBIDDEN.contains(&lower.as_str())
        || lower.starts_with(crate::plan::wire::INTERNAL_HEADER_PREFIX)
    {
        return Err(format!("{h:?} cannot carry a credential"));
    }
    Ok(())
}
