//! Validation of `egress.callers` and of `allow` on targets and routes.

use crate::callers::allow::valid_spiffe_pattern;
use crate::callers::{Allow, HeaderSource, IssuerPlan, JwtAlg, KeySource};
use crate::config::error::{ConfigErrors, FieldPath};
use crate::config::model::{Callers, CallersMtls};
use crate::config::raw::{RawAllow, RawCallers, RawEgress, RawJwtIssuer};
use crate::duration::parse_duration;
use crate::secret::Secret;
use std::time::Duration;

const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(30);
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

fn nonempty_file(v: &str, path: &FieldPath, errs: &mut ConfigErrors) {
    if v.trim().is_empty() {
        errs.push(path.as_str(), "must be a file path");
    }
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `egress.callers`, and the checks that tie `allow` blocks to it.
pub(super) fn callers(
    egress: &RawEgress,
    egress_path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<Callers> {
    let path = egress_path.key("callers");
    let callers = egress.callers.as_ref().map(|raw| build(raw, &path, errs));
    let mtls = callers.as_ref().is_some_and(|c| c.mtls.is_some());
    let jwt = callers.as_ref().is_some_and(|c| !c.jwt.is_empty());
    let mut check = |allow: Option<&RawAllow>, at: FieldPath| {
        let Some(a) = allow else { return };
        if callers.is_none() {
            errs.push(
                at.as_str(),
                "needs egress.callers: without it callers are not identified",
            );
            return;
        }
        if a.spiffe_ids.as_ref().is_some_and(|v| !v.is_empty()) && !mtls {
            errs.push(
                at.key("spiffe_ids").as_str(),
                "needs egress.callers.mtls: SPIFFE IDs come from client certificates",
            );
        }
        for (field, set) in [("subjects", &a.subjects), ("roles", &a.roles)] {
            if set.as_ref().is_some_and(|v| !v.is_empty()) && !jwt {
                errs.push(
                    at.key(field).as_str(),
                    "needs egress.callers.jwt: subjects and roles come from JWTs",
                );
            }
        }
    };
    for (name, t) in &egress.targets {
        check(
            t.allow.as_ref(),
            egress_path.key("targets").key(name).key("allow"),
        );
    }
    for (i, r) in egress.routes.iter().enumerate() {
        check(
            r.allow.as_ref(),
            egress_path.key("routes").index(i).key("allow"),
        );
    }
    callers
}

fn build(raw: &RawCallers, path: &FieldPath, errs: &mut ConfigErrors) -> Callers {
    let mtls = raw.mtls.as_ref().map(|m| {
        let mp = path.key("mtls");
        nonempty_file(&m.server_cert, &mp.key("server_cert"), errs);
        nonempty_file(&m.server_key, &mp.key("server_key"), errs);
        let client_ca = match &m.client_ca {
            Some(ca) => {
                nonempty_file(ca, &mp.key("client_ca"), errs);
                ca.clone()
            }
            None => {
                errs.push(
                    mp.key("client_ca").as_str(),
                    "is required: client certificates are verified against it",
                );
                String::new()
            }
        };
        CallersMtls {
            server_cert: m.server_cert.clone(),
            server_key: m.server_key.clone(),
            client_ca,
            require_client_cert: m.require_client_cert.unwrap_or(true),
        }
    });
    let jp = path.key("jwt");
    let mut jwt: Vec<IssuerPlan> = Vec::new();
    for (i, r) in raw.jwt.iter().flatten().enumerate() {
        let ip = jp.index(i);
        if let Some(first) = jwt.iter().position(|o| o.issuer == r.issuer) {
            errs.push(
                ip.key("issuer").as_str(),
                format!(
                    "issuer {:?} is configured twice (egress.callers.jwt[{first}])",
                    r.issuer
                ),
            );
        }
        jwt.push(issuer(r, &ip, errs));
    }
    if mtls.is_none() && jwt.is_empty() {
        errs.push(
            path.as_str(),
            "names no way to identify callers: add mtls, jwt, or both",
        );
    }
    if mtls.as_ref().is_some_and(|m| !m.require_client_cert) && jwt.is_empty() {
        errs.push(
            path.key("mtls").key("require_client_cert").as_str(),
            "false needs at least one jwt issuer: callers without a certificate have no other identity",
        );
    }
    Callers { mtls, jwt }
}

fn issuer(r: &RawJwtIssuer, ip: &FieldPath, errs: &mut ConfigErrors) -> IssuerPlan {
    if r.issuer.trim().is_empty() {
        errs.push(ip.key("issuer").as_str(), "must not be empty");
    }
    let mut algorithms: Vec<JwtAlg> = Vec::new();
    if r.algorithms.is_empty() {
        errs.push(
            ip.key("algorithms").as_str(),
            "must list at least one algorithm",
        );
    }
    for (j, a) in r.algorithms.iter().enumerate() {
        match JwtAlg::parse(a) {
            Some(alg) if algorithms.contains(&alg) => {
                errs.push(
                    ip.key("algorithms").index(j).as_str(),
                    format!("{a} is listed twice"),
                );
            }
            Some(alg) => algorithms.push(alg),
            None => {
                let names: Vec<&str> = JwtAlg::ALL.iter().map(|a| a.as_str()).collect();
                errs.push(
                    ip.key("algorithms").index(j).as_str(),
                    format!(
                        "unsupported algorithm {a:?} (none is never accepted); expected one of {}",
                        names.join(", ")
                    ),
                );
            }
        }
    }
    let hmac = algorithms.iter().any(|a| a.is_hmac());
    let public = algorithms.iter().any(|a| !a.is_hmac());
    if hmac && public {
        errs.push(
            ip.key("algorithms").as_str(),
            "mixes HS* with public-key algorithms: one issuer has one key family (use two entries)",
        );
    }
    let sources: Vec<&str> = [
        ("secret", r.secret.is_some()),
        ("public_key", r.public_key.is_some()),
        ("jwks_file", r.jwks_file.is_some()),
        ("jwks_url", r.jwks_url.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, set)| set.then_some(n))
    .collect();
    if sources.len() != 1 {
        errs.push(
            ip.as_str(),
            format!(
                "needs exactly one of secret, public_key, jwks_file, jwks_url (found {})",
                if sources.is_empty() {
                    "none".to_string()
                } else {
                    sources.join(", ")
                }
            ),
        );
    }
    let keys = if let Some(secret) = &r.secret {
        if secret.is_empty() {
            errs.push(ip.key("secret").as_str(), "must not be empty");
        }
        if public {
            errs.push(
                ip.key("secret").as_str(),
                "is for HS* algorithms only: RS/PS/ES/EdDSA need public_key, jwks_file or jwks_url",
            );
        }
        KeySource::Secret {
            secret: Secret::new(secret.clone()),
        }
    } else {
        let (field, key) = if let Some(f) = &r.public_key {
            (
                "public_key",
                KeySource::PublicKey {
                    file: f.clone(),
                    pem: None,
                },
            )
        } else if let Some(f) = &r.jwks_file {
            (
                "jwks_file",
                KeySource::JwksFile {
                    file: f.clone(),
                    jwks: None,
                },
            )
        } else {
            let url = r.jwks_url.clone().unwrap_or_default();
            if r.jwks_url.is_some() {
                jwks_url(&url, &ip.key("jwks_url"), errs);
            }
            if let Some(ca) = &r.jwks_ca {
                nonempty_file(ca, &ip.key("jwks_ca"), errs);
            }
            (
                "jwks_url",
                KeySource::JwksUrl {
                    url,
                    ca_cert: r.jwks_ca.clone(),
                },
            )
        };
        if r.jwks_ca.is_some() && r.jwks_url.is_none() {
            errs.push(
                ip.key("jwks_ca").as_str(),
                "is the CA that verifies jwks_url: it needs jwks_url",
            );
        }
        if hmac && !sources.is_empty() {
            errs.push(
                ip.key(field).as_str(),
                "is for RS/PS/ES/EdDSA: HS* algorithms need secret (a key is used only for its own family)",
            );
        }
        key
    };
    let hp = ip.key("from_headers");
    let from_headers: Vec<HeaderSource> = match &r.from_headers {
        None => vec![HeaderSource::bearer()],
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(j, h)| {
                if !valid_header_name(&h.name) {
                    errs.push(
                        hp.index(j).key("name").as_str(),
                        format!("{:?} is not a valid header name", h.name),
                    );
                }
                HeaderSource {
                    name: h.name.clone(),
                    value_prefix: h.value_prefix.clone().unwrap_or_default(),
                }
            })
            .collect(),
    };
    let from_cookies = r.from_cookies.clone().unwrap_or_default();
    for (j, c) in from_cookies.iter().enumerate() {
        if !valid_header_name(c) {
            errs.push(
                ip.key("from_cookies").index(j).as_str(),
                format!("{c:?} is not a valid cookie name"),
            );
        }
    }
    if from_headers.is_empty() && from_cookies.is_empty() {
        errs.push(
            ip.as_str(),
            "from_headers and from_cookies are both empty: the token could not be read",
        );
    }
    let roles_claim = r.roles_claim.clone().unwrap_or_else(|| "roles".into());
    if roles_claim.split('.').any(str::is_empty) {
        errs.push(
            ip.key("roles_claim").as_str(),
            "must be a claim name or a dotted path such as realm_access.roles",
        );
    }
    let clock_skew = match &r.clock_skew {
        None => DEFAULT_CLOCK_SKEW,
        Some(text) => match parse_duration(text) {
            Ok(d) if d > MAX_CLOCK_SKEW => {
                errs.push(ip.key("clock_skew").as_str(), "must be at most 5m");
                DEFAULT_CLOCK_SKEW
            }
            Ok(d) => d,
            Err(e) => {
                errs.push(ip.key("clock_skew").as_str(), e.to_string());
                DEFAULT_CLOCK_SKEW
            }
        },
    };
    let audiences = r.audiences.clone().unwrap_or_default();
    for (j, a) in audiences.iter().enumerate() {
        if a.is_empty() {
            errs.push(ip.key("audiences").index(j).as_str(), "must not be empty");
        }
    }
    IssuerPlan {
        issuer: r.issuer.clone(),
        audiences,
        algorithms,
        keys,
        from_headers,
        from_cookies,
        roles_claim,
        clock_skew_secs: clock_skew.as_secs(),
    }
}

/// `jwks_url`: an https URL (keys fetched in clear text could be forged), without query.
fn jwks_url(url: &str, path: &FieldPath, errs: &mut ConfigErrors) {
    match crate::target_url::TargetUrl::parse(url) {
        Ok(u) if u.scheme == crate::target_url::Scheme::Https => {}
        Ok(_) => errs.push(
            path.as_str(),
            "must be an https URL: keys fetched in clear text could be forged",
        ),
        Err(e) => errs.push(path.as_str(), format!("is not a valid URL: {e}")),
    }
}

/// One `allow` block.
pub(super) fn allow(
    raw: Option<&RawAllow>,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<Allow> {
    let raw = raw?;
    let allow = Allow {
        spiffe_ids: raw.spiffe_ids.clone().unwrap_or_default(),
        subjects: raw.subjects.clone().unwrap_or_default(),
        roles: raw.roles.clone().unwrap_or_default(),
    };
    if allow.is_empty() {
        errs.push(
            path.as_str(),
            "admits no caller: list spiffe_ids, subjects or roles (remove allow to admit every authenticated caller)",
        );
    }
    for (i, p) in allow.spiffe_ids.iter().enumerate() {
        if !valid_spiffe_pattern(p) {
            errs.push(
                path.key("spiffe_ids").index(i).as_str(),
                format!("{p:?} is not a SPIFFE ID (spiffe://trust-domain/path) or a pattern ending in /*"),
            );
        }
    }
    for (field, list) in [("subjects", &allow.subjects), ("roles", &allow.roles)] {
        for (i, v) in list.iter().enumerate() {
            if v.is_empty() {
                errs.push(path.key(field).index(i).as_str(), "must not be empty");
            }
        }
    }
    Some(allow)
}
