//! `egress.targets.<name>.tls`: TLS towards the target.

use super::super::error::{ConfigErrors, FieldPath};
use super::super::model::*;
use super::super::raw::*;
use super::super::text::is_dns_name;
use crate::target_url::{Scheme, TargetUrl};

pub(super) fn tls(
    raw: Option<&RawTls>,
    url: Option<&TargetUrl>,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<TlsSettings> {
    let https = url.is_some_and(|u| u.scheme == Scheme::Https);
    let http = url.is_some_and(|u| u.scheme == Scheme::Http);
    // The URL's scheme decides: https is verified TLS, http is plain HTTP.
    let enabled = match raw.and_then(|t| t.enabled) {
        Some(false) if https => {
            errs.push(
                path.key("enabled").as_str(),
                "an https URL always uses TLS; remove `enabled: false` or use http://",
            );
            true
        }
        Some(true) if http => {
            errs.push(
                path.key("enabled").as_str(),
                "the URL is http://, which is plain HTTP; write the URL with https:// to use TLS",
            );
            // Go on checking the TLS fields as if the URL said https.
            true
        }
        Some(e) => e,
        None if http => false,
        // URL invalid (already reported): judge by the fields, to avoid a second error.
        None => https || raw.is_some_and(|t| t.client_cert.is_some() || t.ca_cert.is_some()),
    };
    if !enabled {
        if let Some(t) = raw {
            for (field, set) in [
                ("client_cert", t.client_cert.is_some()),
                ("client_key", t.client_key.is_some()),
                ("ca_cert", t.ca_cert.is_some()),
                ("insecure_skip_verify", t.insecure_skip_verify == Some(true)),
                ("server_name", t.server_name.is_some()),
            ] {
                if set {
                    let msg = if http {
                        "has no effect: the URL is http://, which is plain HTTP (use https:// for TLS)"
                    } else {
                        "has no effect while TLS is disabled"
                    };
                    errs.push(path.key(field).as_str(), msg);
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
    if let Some(name) = &t.server_name {
        // Control characters are reported by the loader, for every field.
        let is_ip = name.parse::<std::net::IpAddr>().is_ok();
        if !name.contains(char::is_control) && !is_ip && !is_dns_name(name) {
            errs.push(
                path.key("server_name").as_str(),
                format!("{name:?} is not a valid DNS name or IP address"),
            );
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
