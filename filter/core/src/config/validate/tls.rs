//! `egress.targets.<name>.tls`: TLS towards the target.

use super::super::error::{ConfigErrors, FieldPath};
use super::super::model::*;
use super::super::raw::*;
use crate::target_url::{Scheme, TargetUrl};

pub(super) fn tls(
    raw: Option<&RawTls>,
    url: Option<&TargetUrl>,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<TlsSettings> {
    let https = url.is_some_and(|u| u.scheme == Scheme::Https);
    let enabled = match raw.and_then(|t| t.enabled) {
        Some(false) if https => {
            errs.push(
                path.key("enabled").as_str(),
                "an https URL always uses TLS; remove `enabled: false` or use http://",
            );
            true
        }
        Some(e) => e,
        None => https || raw.is_some_and(|t| t.client_cert.is_some() || t.ca_cert.is_some()),
    };
    if !enabled {
        if let Some(t) = raw {
            for (field, set) in [
                ("client_cert", t.client_cert.is_some()),
                ("client_key", t.client_key.is_some()),
                ("ca_cert", t.ca_cert.is_some()),
                ("insecure_skip_verify", t.insecure_skip_verify == Some(true)),
            ] {
                if set {
                    errs.push(
                        path.key(field).as_str(),
                        "has no effect while TLS is disabled",
                    );
                }
            }
        }
        return None;
    }
    let t = raw.cloned().unwrap_or_default();
    let insecure = t.insecure_skip_verify.unwrap_or(false);
    if insecure && t.ca_cert.is_some() {
        errs.push(
            path.key("insecure_skip_verify").as_str(),
            "cannot be combined with ca_cert: either verify against ca_cert or skip verification",
        );
    }
    let client_cert = match (&t.client_cert, &t.client_key) {
        (Some(c), Some(k)) => Some(ClientCert {
            cert: c.clone(),
            key: k.clone(),
        }),
        (Some(_), None) => {
            errs.push(
                path.key("client_key").as_str(),
                "is required with client_cert",
            );
            None
        }
        (None, Some(_)) => {
            errs.push(
                path.key("client_cert").as_str(),
                "is required with client_key",
            );
            None
        }
        (None, None) => None,
    };
    for (field, v) in [
        ("client_cert", &t.client_cert),
        ("client_key", &t.client_key),
        ("ca_cert", &t.ca_cert),
    ] {
        if v.as_ref().is_some_and(|p| p.trim().is_empty()) {
            errs.push(path.key(field).as_str(), "must be a file path");
        }
    }
    Some(TlsSettings {
        insecure_skip_verify: insecure,
        ca_cert: t.ca_cert.clone(),
        client_cert,
        server_name: t
            .server_name
            .clone()
            .or_else(|| url.map(|u| u.host.clone()))
            .unwrap_or_default(),
    })
}
