//! `auth.type: aws_sigv4`: static keys, or `web_identity` (temporary credentials from STS,
//! fetched and pushed by `egressctl token refresh`: a push-only target).

use super::super::super::error::{ConfigErrors, FieldPath};
use super::super::super::model::{
    AwsCredentialSource, AwsSigv4Settings, TlsSettings, WebIdentitySettings,
};
use super::super::super::raw::{RawAuth, RawWebIdentity};
use crate::secret::Secret;
use crate::sigv4::{AwsKeys, PayloadMode};
use crate::target_url::{Scheme, TargetUrl};

const KIND: &str = "aws_sigv4";

fn non_empty<'a>(
    v: Option<&'a str>,
    field: &str,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<&'a str> {
    match v {
        Some(s) if !s.trim().is_empty() => Some(s),
        Some(_) => {
            errs.push(path.key(field).as_str(), "must not be empty");
            None
        }
        None => {
            errs.push(
                path.key(field).as_str(),
                format!("is required for auth type {KIND}"),
            );
            None
        }
    }
}

/// Region and service names: lower-case letters, digits and `-` (they are part of the
/// signing scope, so a typo signs for the wrong place).
fn scope_name(v: Option<&str>, field: &str, path: &FieldPath, errs: &mut ConfigErrors) -> String {
    let Some(s) = non_empty(v, field, path, errs) else {
        return String::new();
    };
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errs.push(
            path.key(field).as_str(),
            format!("{s:?} is not an AWS {field} name (lower-case letters, digits and '-')"),
        );
    }
    s.to_string()
}

/// `auth` of type `aws_sigv4`. `tls` is the target's (its `ca_cert` also verifies STS).
pub(super) fn aws_sigv4(
    a: &RawAuth,
    tls: Option<&TlsSettings>,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<AwsSigv4Settings> {
    let region = scope_name(a.region.as_deref(), "region", path, errs);
    let service = scope_name(a.service.as_deref(), "service", path, errs);
    let payload = match a.payload.as_deref() {
        None | Some("unsigned") => PayloadMode::Unsigned,
        Some("signed") => PayloadMode::Signed,
        Some(other) => {
            errs.push(
                path.key("payload").as_str(),
                format!("unknown payload {other:?}; expected unsigned or signed"),
            );
            PayloadMode::Unsigned
        }
    };
    let has_static = a.access_key_id.is_some() || a.secret_access_key.is_some();
    let source = match (&a.web_identity, has_static) {
        (Some(_), true) => {
            errs.push(
                path.key("web_identity").as_str(),
                "cannot be combined with access_key_id/secret_access_key: use static keys or web_identity",
            );
            None
        }
        (Some(w), false) => {
            if a.session_token.is_some() {
                errs.push(
                    path.key("session_token").as_str(),
                    "only applies to static keys (web_identity credentials bring their own)",
                );
            }
            let settings = web_identity(w, &region, tls, &path.key("web_identity"), errs);
            settings.map(AwsCredentialSource::WebIdentity)
        }
        (None, _) => {
            let id = non_empty(a.access_key_id.as_deref(), "access_key_id", path, errs);
            if id.is_some_and(|i| !i.bytes().all(|b| b.is_ascii_alphanumeric())) {
                errs.push(
                    path.key("access_key_id").as_str(),
                    "must be letters and digits (an AWS access key id such as AKIA...)",
                );
            }
            let secret = non_empty(
                a.secret_access_key.as_deref(),
                "secret_access_key",
                path,
                errs,
            );
            let token = match a.session_token.as_deref() {
                Some(t) if t.trim().is_empty() => {
                    errs.push(path.key("session_token").as_str(), "must not be empty");
                    None
                }
                t => t,
            };
            match (id, secret) {
                (Some(id), Some(secret)) => Some(AwsCredentialSource::Static(AwsKeys {
                    access_key_id: id.to_string(),
                    secret_access_key: Secret::new(secret),
                    session_token: token.map(Secret::new),
                })),
                _ => None,
            }
        }
    };
    Some(AwsSigv4Settings {
        region,
        service,
        payload,
        source: source?,
    })
}

fn web_identity(
    w: &RawWebIdentity,
    region: &str,
    tls: Option<&TlsSettings>,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<WebIdentitySettings> {
    let arn_ok = w.role_arn.starts_with("arn:")
        && w.role_arn.split(':').count() == 6
        && w.role_arn.contains(":role/");
    if w.role_arn.trim().is_empty() {
        errs.push(
            path.key("role_arn").as_str(),
            "is required for web_identity (a role ARN: arn:aws:iam::<account>:role/<name>)",
        );
    } else if !arn_ok {
        errs.push(
            path.key("role_arn").as_str(),
            "must be a role ARN (arn:aws:iam::<account>:role/<name>)",
        );
    }
    if w.token_file.trim().is_empty() {
        errs.push(
            path.key("token_file").as_str(),
            "must be a file path (the web identity token, e.g. a projected service-account token)",
        );
    }
    let session_name = w.session_name.clone().unwrap_or_else(|| "egress".into());
    let name_ok = (2..=64).contains(&session_name.len())
        && session_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@-_".contains(&b));
    if !name_ok {
        errs.push(
            path.key("session_name").as_str(),
            "must be 2 to 64 letters, digits or +=,.@-_",
        );
    }
    let sts_text = w
        .sts_url
        .clone()
        .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
    let sts_url = match TargetUrl::parse(&sts_text) {
        Ok(u) => Some(u),
        Err(e) => {
            errs.push(path.key("sts_url").as_str(), e.to_string());
            None
        }
    }?;
    let sts_tls = (sts_url.scheme == Scheme::Https).then(|| TlsSettings {
        insecure_skip_verify: false,
        ca_cert: tls.and_then(|t| t.ca_cert.clone()),
        client_cert: None,
        server_name: sts_url.host.clone(),
    });
    (arn_ok && name_ok).then(|| WebIdentitySettings {
        role_arn: w.role_arn.clone(),
        token_file: w.token_file.clone(),
        session_name,
        sts_url,
        tls: sts_tls,
    })
}
