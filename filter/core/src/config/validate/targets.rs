//! `egress.defaults` and `egress.targets.<name>`: URL, timeout, then TLS and auth.

use super::super::error::{ConfigErrors, FieldPath};
use super::super::model::*;
use super::super::raw::*;
use super::{auth::auth, opt_duration, tls::tls};
use super::{DEFAULT_RETRY_DELAY, DEFAULT_TIMEOUT};
use crate::target_url::{Scheme, TargetUrl};

pub(super) fn defaults(
    raw: Option<&RawDefaults>,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Defaults {
    let Some(raw) = raw else {
        return Defaults {
            timeout: DEFAULT_TIMEOUT,
            retry_count: 0,
            retry_delay: DEFAULT_RETRY_DELAY,
        };
    };
    let retry_count = raw.retry_count.unwrap_or(0);
    if retry_count > 10 {
        errs.push(path.key("retry_count").as_str(), "must be at most 10");
    }
    Defaults {
        timeout: opt_duration(&raw.timeout, &path.key("timeout"), errs).unwrap_or(DEFAULT_TIMEOUT),
        retry_count,
        retry_delay: opt_duration(&raw.retry_delay, &path.key("retry_delay"), errs)
            .unwrap_or(DEFAULT_RETRY_DELAY),
    }
}

fn valid_target_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub(super) fn target(
    name: &str,
    raw: &RawTarget,
    defaults: &Defaults,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Target {
    if !valid_target_name(name) {
        errs.push(
            path.as_str(),
            "target names may use letters, digits, '-', '_' and '.' (at most 64)",
        );
    }
    let url = match TargetUrl::parse(&raw.url) {
        Ok(u) => Some(u),
        Err(e) => {
            errs.push(path.key("url").as_str(), e.to_string());
            None
        }
    };
    let tls = tls(raw.tls.as_ref(), url.as_ref(), &path.key("tls"), errs);
    let auth = auth(raw.auth.as_ref(), tls.as_ref(), &path.key("auth"), errs);
    Target {
        name: name.to_string(),
        url: url.unwrap_or(TargetUrl {
            scheme: Scheme::Http,
            host: "invalid".into(),
            port: 80,
            explicit_port: false,
            base_path: String::new(),
        }),
        timeout: opt_duration(&raw.timeout, &path.key("timeout"), errs).unwrap_or(defaults.timeout),
        auth,
        tls,
        allow: super::callers::allow(raw.allow.as_ref(), &path.key("allow"), errs),
    }
}
