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
            errs.push(path.key("header").as_str(), e.to_string());
        }
    }
    let key = required(&a.key, "key", kind, path, errs);
    if let Some(k) = key {
        check_header_value(k, "key", path, errs);
    }
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
        Some(t) => {
            check_header_value(t, "token", path, errs);
            Auth::Bearer {
                token: Secret::new(t),
            }
        }
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

/// A value sent verbatim as a header value: HTTP drops surrounding spaces, so the target would
/// see another credential than the one configured.
fn check_header_value(v: &str, field: &str, path: &FieldPath, errs: &mut ConfigErrors) {
    if v.starts_with(' ') || v.ends_with(' ') {
        errs.push(
            path.key(field).as_str(),
            "begins or ends with a space, which HTTP drops from a header value; remove it",
        );
    }
}

/// Why a header cannot carry a static credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum HeaderError {
    #[error("{0:?} is an HTTP/2 pseudo-header (the proxy sets :authority and :path itself); name a regular header")]
    Pseudo(String),
    #[error("{0:?} is not a valid header name")]
    NotAName(String),
    #[error("{0:?} cannot carry a credential")]
    Reserved(String),
    #[error("{0:?} cannot carry a credential: Envoy reads x-envoy-* headers as instructions")]
    Envoy(String),
}

fn check_credential_header(h: &str) -> Result<(), HeaderError> {
    if h.starts_with(':') {
        return Err(HeaderError::Pseudo(h.into()));
    }
    let token = !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(HeaderError::NotAName(h.into()));
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
        || lower.starts_with(crate::types::INTERNAL_HEADER_PREFIX)
    {
        return Err(HeaderError::Reserved(h.into()));
    }
    if lower.starts_with("x-envoy-") {
        return Err(HeaderError::Envoy(h.into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shown after the field path by `egressctl validate`: the texts are kept as they were.
    #[test]
    fn credential_header_errors_keep_their_texts() {
        let text = |h: &str| check_credential_header(h).map_err(|e| e.to_string());
        assert_eq!(
            text(":path"),
            Err(r#"":path" is an HTTP/2 pseudo-header (the proxy sets :authority and :path itself); name a regular header"#.into())
        );
        assert_eq!(
            text("X Key"),
            Err(r#""X Key" is not a valid header name"#.into())
        );
        assert_eq!(
            text("Host"),
            Err(r#""Host" cannot carry a credential"#.into())
        );
        assert_eq!(
            text("x-egress-target"),
            Err(r#""x-egress-target" cannot carry a credential"#.into())
        );
        assert_eq!(
            text("X-Envoy-Retry-On"),
            Err(r#""X-Envoy-Retry-On" cannot carry a credential: Envoy reads x-envoy-* headers as instructions"#.into())
        );
        assert_eq!(text("Authorization"), Ok(()));
        assert_eq!(
            check_credential_header("te"),
            Err(HeaderError::Reserved("te".into()))
        );
    }
}
